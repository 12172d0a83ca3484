"""Checks on a CSW request before pycsw sees it, and CSW's own exception reports for what Lantu refuses.

pycsw parses XML without resolving entities, but a DOCTYPE has no place in a CSW request (XXE, cf.
GeoServer CVE-2025-30220), so it is refused outright. ``Harvest`` sources are checked against the SSRF
rules, and ``ResponseHandler`` (pycsw would push the response to an ftp:// or mailto: address of the
caller's choosing) is not offered."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from lxml import etree

MAX_BODY = 10 * 1024 * 1024
NS_CSW2 = "http://www.opengis.net/cat/csw/2.0.2"
NS_CSW3 = "http://www.opengis.net/cat/csw/3.0"
# namespace, report version and language attribute: OWS 1.0 (CSW 2.0.2) names it `language`, OWS 2.0 `xml:lang`
OWS_OF = {"2.0.2": ("http://www.opengis.net/ows", "1.2.0", "language"),
          "3.0.0": ("http://www.opengis.net/ows/2.0", "3.0.0", "xml:lang")}
STATUS_OF = {"OperationNotSupported": 501, "OptionNotSupported": 501}
WHOLE_NUMBERS = ("maxrecords", "startposition", "hopcount")  # pycsw converts these with int() and fails
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class Refused(Exception):
    """A request Lantu answers with an exception report itself."""

    def __init__(self, code: str, text: str, locator: str | None = None, status: int | None = None):
        super().__init__(text)
        self.code, self.text, self.locator = code, text, locator
        self.status = status or STATUS_OF.get(code, 400)


def version_of(args: dict[str, str], body: bytes) -> str:
    """The CSW version a request speaks (pycsw's own rule: 2.0.2 when named, else 3.0)."""
    if body:
        return "2.0.2" if NS_CSW2.encode() in body else "3.0.0"
    lower = {k.lower(): v for k, v in args.items()}
    return "2.0.2" if lower.get("version") == "2.0.2" or "2.0.2" in lower.get("acceptversions", "") else "3.0.0"


def exception_report(error: Refused, version: str) -> bytes:
    namespace, report_version, lang = OWS_OF[version]
    locator = f" locator={quoteattr(error.locator)}" if error.locator else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ows:ExceptionReport xmlns:ows="{namespace}" '
            f'version="{report_version}" {lang}="en"><ows:Exception exceptionCode={quoteattr(error.code)}'
            f"{locator}><ows:ExceptionText>{escape(error.text)}</ows:ExceptionText></ows:Exception>"
            f"</ows:ExceptionReport>").encode()


def parse_body(body: bytes) -> etree._Element | None:
    """The POSTed request document (None for an empty body); DOCTYPEs and malformed XML are refused."""
    if not body.strip():
        return None
    if len(body) > MAX_BODY:
        raise Refused("NoApplicableCode", "request body too large", status=413)
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise Refused("NoApplicableCode", "XML with a DOCTYPE or entity declarations is not accepted")
    try:
        return etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as exc:
        # locator "service", as pycsw's own report for an unparsable request (and the CITE csw30 suite) has it
        raise Refused("NoApplicableCode", f"the request body is not well-formed XML: {str(exc)[:200]}",
                      "service") from exc


def namespace_decides_version(doc: etree._Element | None, body: bytes) -> tuple[etree._Element | None, bytes]:
    """A request in the CSW 2.0.2 namespace is a 2.0.2 request whatever its ``version`` attribute says. GDAL's
    CSW driver (3.6) copies the version of the capabilities it was given (3.0.0, a server's highest) into
    its 2.0.2 GetRecords, which pycsw's schema check refuses; read it as the 2.0.2 request it is."""
    if doc is None or etree.QName(doc).namespace != NS_CSW2 or doc.get("version") in (None, "2.0.2"):
        return doc, body
    doc.set("version", "2.0.2")
    return doc, etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def check_numbers(doc: etree._Element | None, args: dict[str, str]) -> None:
    """Paging parameters must be whole numbers when given (pycsw 2.6.2 answers ``maxRecords=abc`` with a
    crash; an empty value means the default, as in pycsw)."""
    given = [(k.lower(), v) for k, v in args.items()]
    if doc is not None:
        given += [(k.lower(), v) for e in doc.iter() if isinstance(e.tag, str) for k, v in e.attrib.items()]
    for name, value in given:
        if name in WHOLE_NUMBERS and value.strip() and not value.strip().isdigit():
            raise Refused("InvalidParameterValue", f"{name} must be a whole number, not {value[:20]!r}", name)


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def harvest_sources(doc: etree._Element | None, args: dict[str, str]) -> list[str]:
    """The ``Source`` URLs a Harvest request names (POST XML or KVP)."""
    sources = [v for k, v in args.items() if k.lower() == "source"]
    if doc is not None:
        for element in doc.iter():
            if local_name(element) == "Source" and element.text:
                sources.append(element.text.strip())
    return sources


def has_response_handler(doc: etree._Element | None, args: dict[str, str]) -> bool:
    if any(k.lower() == "responsehandler" for k in args):
        return True
    return doc is not None and any(local_name(e) == "ResponseHandler" for e in doc.iter())

"""pycsw 2.6.2 wired to Lantu: its configuration built in memory from the settings (never a file chosen by a
request — pycsw's own ``wsgi.py`` lets ``config=`` pick one), its repository in schema ``catalog`` of Lantu's
PostGIS, and one call that answers a WSGI environ with ``(status, headers, body)``."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from psycopg2.extensions import parse_dsn

from lantu.config.settings import Settings
from lantu.providers.pool import dsn_for

# pycsw 2.6.2 imports pkg_resources and shapely.errors.ReadingError; both warn on every import in this stack.
warnings.filterwarnings("ignore", message=".*pkg_resources.*")
warnings.filterwarnings("ignore", message=".*ReadingError is deprecated.*")
warnings.filterwarnings("ignore", message="Module lantu was already imported.*")
# SQLAlchemy 1.4 reflects the PostGIS column without knowing its type; pycsw never maps that column.
warnings.filterwarnings("ignore", message="Did not recognize type 'geometry'.*")

log = logging.getLogger(__name__)
RECORDS_TABLE = "catalog.records"
_lock = threading.Lock()


def sqlalchemy_url(settings: Settings) -> str:
    """The same database as Lantu's pool, as an SQLAlchemy 1.4 URL (unix socket of the embedded cluster
    through ``?host=``)."""
    if settings.database_url:
        return "postgresql+psycopg2://" + settings.database_url.split("://", 1)[1]
    parts = parse_dsn(dsn_for(settings))
    user = quote(parts.get("user", ""))
    query = f"host={quote(parts['host'])}&port={parts.get('port', '5432')}"
    return f"postgresql+psycopg2://{user}@/{quote(parts.get('dbname', ''))}?{query}"


def hidden_filter(identifiers: list[str]) -> str | None:
    """pycsw's ``repository.filter`` (an SQL condition it adds to every query, GetRecordById included) that
    hides the given records. pycsw takes it as text, so each identifier is quoted by the driver's own
    literal quoting (they are Lantu's generated identifiers, pattern-checked, never caller input)."""
    if not identifiers:
        return None
    from psycopg2.extensions import QuotedString

    quoted = []
    for identifier in identifiers:
        literal = QuotedString(identifier)
        literal.encoding = "UTF8"
        quoted.append(literal.getquoted().decode("utf-8"))
    return f"identifier NOT IN ({', '.join(quoted)})"


def pycsw_config(settings: Settings, table: str = RECORDS_TABLE,
                 overrides: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """pycsw's configuration sections. Transactions and Harvest are on; who may call them is decided by the
    client address Lantu passes (``catalog_manager_ips``), never by a forwarded-for header."""
    config = {
        "server": {"home": ".", "url": f"{settings.public_url}/csw", "mimetype": "application/xml; charset=UTF-8",
                   "encoding": "UTF-8", "language": "en-US", "maxrecords": str(settings.catalog_max_records),
                   "pretty_print": "false", "domainquerytype": "list", "domaincounts": "false",
                   "profiles": "apiso"},
        "manager": {"transactions": "true", "allowed_ips": ",".join(settings.catalog_manager_ips) or "none",
                    "csw_harvest_pagination_size": "20"},
        "metadata:main": {
            "identification_title": "蓝图 一张图 资源目录 (Lantu resource catalogue)",
            "identification_abstract": "县级国土空间规划“一张图”的信息资源目录：每个图层与服务一条 ISO 19139 记录。 "
                                       "The information-resource catalogue of the county's one blueprint.",
            "identification_keywords": "资源目录,多规合一,一张图,catalogue,CGCS2000",
            "identification_keywords_type": "theme", "identification_fees": "None",
            "identification_accessconstraints": "None",
            "provider_name": settings.catalog_organisation, "provider_url": settings.public_url,
            "contact_name": settings.catalog_organisation, "contact_position": "GIS", "contact_address": "",
            "contact_city": "长沙县", "contact_stateorprovince": "湖南省", "contact_postalcode": "",
            "contact_country": "CN", "contact_phone": "", "contact_fax": "",
            "contact_email": settings.catalog_contact_email, "contact_url": settings.public_url,
            "contact_hours": "", "contact_instructions": "", "contact_role": "pointOfContact"},
        "repository": {"database": sqlalchemy_url(settings), "table": table},
        "metadata:inspire": {"enabled": "false"},
    }
    if settings.catalog_peers:
        config["server"]["federatedcatalogues"] = ",".join(peer.url for peer in settings.catalog_peers)
    for section, values in (overrides or {}).items():
        config.setdefault(section, {}).update(values)
    return config


@dataclass(frozen=True)
class CswAnswer:
    status: int
    content_type: str
    body: bytes


def answer(config: Mapping[str, Mapping[str, str]], environ: dict) -> CswAnswer:
    """Run one CSW request through pycsw. ``environ`` is a WSGI environ whose body has been read already
    (``wsgi.input`` positioned at the start, ``CONTENT_LENGTH`` set)."""
    from pycsw.server import Csw

    version = "3.0.0"
    csw = Csw({s: dict(v) for s, v in config.items()}, environ, version=version)
    status, body = csw.dispatch_wsgi()
    content_type = getattr(csw, "contenttype", None) or "application/xml; charset=UTF-8"
    return CswAnswer(int(str(status).split()[0]), content_type, body)


def context():
    """A pycsw StaticContext (namespaces, model) for parsing records outside a request."""
    from pycsw.core.config import StaticContext

    return StaticContext()


def repository(settings: Settings, table: str = RECORDS_TABLE):
    """pycsw's Repository over a records table; its ORM class is what pycsw's parser instantiates."""
    from pycsw.core.repository import Repository

    ctx = context()
    ctx.url = f"{settings.public_url}/csw"  # pycsw's capabilities parsers link harvested records to it
    with _lock:  # SQLAlchemy reflection of the same table from two threads at once is not safe
        return Repository(sqlalchemy_url(settings), ctx, table=table)

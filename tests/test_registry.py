"""The registry holds one entry per row of the platform's layer list, and validation names every fault."""

from __future__ import annotations

import csv

import pytest
import yaml

from lantu.config.codelists import load_code_lists
from lantu.config.registry import RegistryError, parse_registry
from lantu.config.settings import SettingsError, load_settings


def _csv_rows(shared_dir):
    with open(shared_dir / "blueprint-layers.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_one_entry_per_csv_row(registry, shared_dir):
    rows = _csv_rows(shared_dir)
    assert [r["id"] for r in rows] == [layer.id for layer in registry]
    for row in rows:
        layer = registry.get(row["id"])
        assert layer.name_zh == row["name_zh"]
        assert layer.title_en == row["title_en"]
        assert (layer.group, layer.subgroup) == (row["group"], row["subgroup"])
        assert layer.control_line == (row["control_line"] == "yes")
        assert layer.metadata.department == row["department"]
        assert layer.metadata.update_cycle == row["update_cycle"]
        expected_kind = {"raster": "raster", "none": "catalog"}.get(row["geometry"], "vector")
        assert layer.kind == expected_kind
        if expected_kind == "vector":
            assert layer.geometry == row["geometry"]
            codes = {f.code for f in layer.fields}
            assert {"BSM", "YSDM", "XZQDM", "XZQMC"} <= codes
            assert ("MJ" in codes) == (row["geometry"] == "Polygon")
            assert set(filter(None, row["key_fields"].split(";"))) <= codes
    counts = {k: sum(1 for layer in registry if layer.kind == k) for k in ("vector", "raster", "catalog")}
    assert counts == {"vector": 73, "raster": 3, "catalog": 8}


def test_code_list_fields_point_at_real_lists(registry):
    lists = registry.code_lists
    assert "0101" in lists["gbt21010"] and lists["gbt21010"].codes["0101"].name_zh == "水田"
    assert lists["xzqdm"].codes["430121004000"].name_zh == "\u3bbe梨街道"  # 㮾 survives
    assert lists["tdgh_jsydgzq"].codes["010"].name_zh == "允许建设区"
    assert lists["tdgh_jsydgzq"].any_recalled  # recalled rows stay flagged
    farmland = registry.get("basic_farmland")
    assert farmland.field("DLBM").code_list == "gbt21010" and farmland.field("DLBM").required


def _doc():
    from importlib import resources

    return yaml.safe_load(resources.files("lantu.config").joinpath("registry.yaml").read_text("utf-8"))


def test_validation_reports_every_problem_with_its_path():
    doc = _doc()
    farmland = next(e for e in doc["layers"] if e["id"] == "basic_farmland")
    next(f for f in farmland["fields"] if f["code"] == "DLBM")["code_list"] = "no_such_list"
    red = next(e for e in doc["layers"] if e["id"] == "eco_red_line")
    red["style"]["stroke"] = "red"
    red["bogus"] = 1
    doc["layers"].append(dict(farmland))  # duplicate id
    with pytest.raises(RegistryError) as err:
        parse_registry(doc, load_code_lists())
    problems = err.value.problems
    assert "layers.basic_farmland.fields.DLBM.code_list: unknown code list 'no_such_list'" in problems
    assert any(p.startswith("layers.eco_red_line.style.stroke:") for p in problems)
    assert any(p.startswith("layers.eco_red_line.bogus:") for p in problems)
    assert "layers.basic_farmland.id: duplicate layer id" in problems


def test_vector_layer_without_geometry_is_refused():
    doc = _doc()
    entry = next(e for e in doc["layers"] if e["id"] == "key_projects")
    del entry["geometry"]
    with pytest.raises(RegistryError, match=r"layers.key_projects.geometry"):
        parse_registry(doc, load_code_lists())


def test_settings_layers_and_errors(tmp_path):
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text("workers: 3\nmax_limit: 500\n")
    env = {"LANTU_SETTINGS": str(settings_file), "LANTU_HOME": str(tmp_path / "h"),
           "LANTU_PUBLIC_URL": "https://plan.example.cn/lantu/"}
    s = load_settings(environ=env)
    assert (s.workers, s.max_limit, s.home) == (3, 500, tmp_path / "h")
    assert s.public_url == "https://plan.example.cn/lantu" and s.embedded
    settings_file.write_text("workers: lots\nunknown_key: 1\n")
    with pytest.raises(SettingsError, match="workers") as err:
        load_settings(environ=env)
    assert "unknown_key" in str(err.value)
    with pytest.raises(SettingsError, match="database_url"):
        load_settings(environ={"LANTU_DATABASE_URL": "mysql://x"})


def test_every_setting_is_documented():
    from pathlib import Path

    from lantu.config.settings import Settings

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text("utf-8")
    for name in Settings.model_fields:
        assert f"`{name}`" in doc, f"setting {name} is not documented in docs/configuration.md"

"""One source per default: docs/config.md's key table is generated from the fields' help text, and
the shipped default YAML repeats no field default."""

from __future__ import annotations

import dataclasses
from typing import Any

from evolve import config_doc
from evolve.config import DEFAULT_CONFIG, RunConfig, read_yaml
from evolve.genome import GENE_TABLE, GeneSpace


def test_docs_config_md_table_is_current() -> None:
    doc = config_doc.DOC.read_text()
    assert config_doc.reference() in doc, (
        "docs/config.md's key table is stale: run `python -m evolve.config_doc`")


def test_the_table_names_every_field_and_every_gene() -> None:
    ref = config_doc.reference()
    for gene in GENE_TABLE:
        assert f"| `genome.{gene.field}` |" in ref and f"{gene.kind}: {gene.help}" in ref
    for f in dataclasses.fields(RunConfig):
        assert f"| `{f.name}" in ref
    # a help text edited on a field changes the table: stale docs cannot pass
    f = next(f for f in dataclasses.fields(GeneSpace) if f.name == "lr")
    assert f.metadata["help"] in ref


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_default_yaml_repeats_no_field_default() -> None:
    data = read_yaml(DEFAULT_CONFIG)
    repeated = []

    def walk(node: dict[str, Any], cls: type, prefix: str) -> None:
        defaults = _defaults(cls)
        for key, value in node.items():
            nested = next((f.metadata.get("nested") for f in dataclasses.fields(cls)
                           if f.name == key), None)
            if isinstance(value, dict) and nested is not None and dataclasses.is_dataclass(nested):
                walk(value, nested, f"{prefix}{key}.")
            elif key in defaults and defaults[key] == value:
                repeated.append(prefix + key)

    walk(data, RunConfig, "")
    assert not repeated, f"default.yaml repeats field defaults: {repeated}; delete them there"
    assert set(data) == {"tasks"}        # the one key without a field default

"""One source per default: docs/config.md's key table and the keys of the shipped default YAML
are generated from the config fields' defaults and help text."""

from __future__ import annotations

import dataclasses

from evolve import config_doc
from evolve.config import RunConfig
from evolve.config_files import DEFAULT_CONFIG, read_yaml
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


def test_default_yaml_keys_are_the_field_defaults() -> None:
    text = DEFAULT_CONFIG.read_text()
    assert config_doc.default_yaml_keys() in text, (
        "configs/default.yaml is stale: run `python -m evolve.config_doc`")
    # loading the generated keys gives back every field default (only `tasks` is hand-written)
    data = read_yaml(DEFAULT_CONFIG)
    for f in dataclasses.fields(RunConfig):
        if f.name == "tasks":
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        got = data[f.name]
        want = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
        assert got == want, f.name

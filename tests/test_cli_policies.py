"""`kpiguard policies apply/export` and `kpiguard rules generate`, run in-process on both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from kpiguard.cli import main
from kpiguard.db.engine import create_engine, session_factory
from kpiguard.db.models import AuditEvent, RegressionPolicy

POLICIES = """\
version: 1
policies:
  - domain: WHOLESALE
    metric: contract_rate
    max_drop_fraction: 0.25
    enabled: true
    changed_by: bryan
  - domain: NEWDOMAIN
    metric: new_metric
    action: KILL_SWITCH
"""


@pytest.fixture
def env(database, monkeypatch):
    """Point the CLI at the test's database through KPIGUARD_* variables."""
    for key in list(__import__("os").environ):
        if key.startswith("KPIGUARD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KPIGUARD_DATABASE_URL", database.url)
    if database.schema:
        monkeypatch.setenv("KPIGUARD_DATABASE_SCHEMA", database.schema)
    assert main(["db", "upgrade"]) == 0
    return database


def _rows(env) -> tuple[dict, list]:
    from kpiguard.settings import load_settings

    async def read():
        engine = create_engine(load_settings())
        try:
            async with session_factory(engine)() as s:
                policies = {(p.domain, p.metric): p for p in (await s.execute(select(RegressionPolicy))).scalars()}
                audit = list((await s.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())
            return policies, audit
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_apply_shows_diff_is_idempotent_and_audited(env, tmp_path, capsys):
    """A dry run changes nothing; apply changes and audits with source cli; a second apply changes nothing."""
    f = tmp_path / "p.yaml"
    f.write_text(POLICIES)
    assert main(["policies", "apply", str(f), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "~ WHOLESALE.contract_rate" in out and "max_drop_fraction: 0.2 -> 0.25" in out
    assert "+ NEWDOMAIN.new_metric (new)" in out and "would change 2" in out
    policies, audit = _rows(env)
    assert ("NEWDOMAIN", "new_metric") not in policies and audit == []

    assert main(["policies", "apply", str(f)]) == 0
    assert "changed 2" in capsys.readouterr().out
    policies, audit = _rows(env)
    assert policies[("WHOLESALE", "contract_rate")].max_drop_fraction == 0.25
    assert policies[("NEWDOMAIN", "new_metric")].action == "KILL_SWITCH"
    assert {a.source for a in audit} == {"cli"} and len(audit) == 2
    assert next(a for a in audit if a.metric == "contract_rate").actor == "bryan"

    assert main(["policies", "apply", str(f)]) == 0
    assert "changed 0" in capsys.readouterr().out
    assert len(_rows(env)[1]) == 2


def test_export_round_trips_through_apply(env, tmp_path, capsys):
    """What export prints, apply reads back as unchanged."""
    assert main(["policies", "export"]) == 0
    exported = capsys.readouterr().out
    assert "domain: CAPITAL" in exported and "action: KILL_SWITCH" in exported
    f = tmp_path / "exported.yaml"
    f.write_text(exported)
    assert main(["policies", "apply", str(f)]) == 0
    assert "changed 0" in capsys.readouterr().out


def test_bad_policies_file_names_file_and_field(env, tmp_path, capsys):
    """A bad file exits 2 naming the file and the field, and changes nothing."""
    f = tmp_path / "bad.yaml"
    f.write_text("policies:\n  - domain: W\n    metric: m\n    max_drop_fraction: 2\n")
    assert main(["policies", "apply", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "policies[0].max_drop_fraction" in err
    assert _rows(env)[1] == []


def test_rules_generate_check_matches_checked_in_rules(capsys):
    """`kpiguard rules generate --check` finds the checked-in rules/ up to date."""
    repo = Path(__file__).resolve().parent.parent
    assert main(["rules", "generate", "--policies", str(repo / "rules/policies.yaml"),
                 "--out", str(repo / "rules"), "--check"]) == 0

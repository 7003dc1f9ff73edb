"""The --ovn-nb flags: what the command line refuses before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_ovs_plugin import cli


def check(*argv: str) -> str | None:
    return cli._check_ovn(cli._parser().parse_args(["serve", *argv]))


def test_no_ovn_nb_is_fine() -> None:
    assert check() is None


def test_plain_tcp_needs_the_insecure_flag() -> None:
    problem = check("--ovn-nb", "tcp:192.0.2.11:6641")
    assert problem is not None and "--ovn-nb-insecure-tcp" in problem
    assert check("--ovn-nb", "tcp:192.0.2.11:6641", "--ovn-nb-insecure-tcp") is None
    assert check("--ovn-nb", "unix:/run/ovn/ovnnb_db.sock") is None


def test_ssl_needs_key_certificate_and_ca(tmp_path: Path) -> None:
    remotes = "ssl:192.0.2.11:6641,ssl:192.0.2.12:6641"
    problem = check("--ovn-nb", remotes)
    assert problem is not None
    assert all(f in problem for f in ("--ovn-nb-private-key", "--ovn-nb-ca-cert"))
    files = []
    for name in ("key", "cert", "ca"):
        (tmp_path / name).write_text("x")
        files.append(str(tmp_path / name))
    args = ["--ovn-nb-private-key", files[0], "--ovn-nb-certificate", files[1]]
    assert check("--ovn-nb", remotes, *args, "--ovn-nb-ca-cert", files[2]) is None
    missing = check("--ovn-nb", remotes, *args, "--ovn-nb-ca-cert", str(tmp_path / "nope"))
    assert missing is not None and "no such file" in missing


def test_a_bad_remote_and_a_bad_timeout_are_refused() -> None:
    assert "use ssl:" in (check("--ovn-nb", "http://x") or "")
    assert "positive" in (check("--ovn-nb", "unix:/x", "--ovn-join-timeout", "0") or "")


def test_main_exits_with_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--ovn-nb", "tcp:192.0.2.11:6641"])
    assert exit_info.value.code == 2
    assert "--ovn-nb-insecure-tcp" in capsys.readouterr().err

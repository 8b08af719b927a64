"""`aira design autoresearch` reaches design/autoresearch's own command (its tests are in tests/design/autoresearch/)."""

from design.cli import main


def test_the_verb_forwards_to_the_adapter_and_its_errors_are_one_line(tmp_path, capsys):
    assert main(["autoresearch", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "is not a directory: give the path of an autoresearch checkout" in err and "Traceback" not in err


def test_resume_and_replay_of_a_non_autoresearch_directory_keep_their_own_errors(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "autoresearch" not in capsys.readouterr().err

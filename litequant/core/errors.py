"""The exception types that the stages raise for problems a user can fix."""


class PipelineError(Exception):
    """A problem with the user's input, params or environment.

    The message must say what was wrong and how to fix it (name the path or params key).
    Stage entry points print it as one short message, without a traceback, and exit with
    :attr:`exit_code`.
    """

    exit_code: int = 1


class UnusableInputError(PipelineError):
    """Input a command cannot judge at all (e.g. missing metrics, an unknown git revision).

    Exit code 2, so that CI can tell "the gate could not run" from "the gate failed" (1).
    """

    exit_code = 2


def relative_path_hint(path: object) -> str:
    """Why a relative params path was not found when the stage ran in a DVC experiment's
    temporary copy of the project (``dvc exp run --queue``/``--temp``), or ``""``.

    Queued experiments run inside ``.dvc/tmp/exps/...``, so a path such as ``../shared/...``
    is resolved from there, not from the project root.
    """
    from pathlib import Path

    cwd = Path.cwd()
    if Path(str(path)).is_absolute() or ".dvc/tmp/exps" not in cwd.as_posix():
        return ""
    return (f" (a relative path, resolved inside the experiment's temporary copy "
            f"{cwd / str(path)}: queued and --temp experiments run in .dvc/tmp/exps/..., so give "
            "it as an absolute path)")

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

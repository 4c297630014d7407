"""The one exception type that the stages raise for problems a user can fix."""


class PipelineError(Exception):
    """A problem with the user's input, params or environment.

    The message must say what was wrong and how to fix it (name the path or params key).
    Stage entry points print it as one short message, without a traceback.
    """

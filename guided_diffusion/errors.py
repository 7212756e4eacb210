"""The one exception type for problems a user can cause and fix.

Scripts catch :class:`UserError`, print its message as a single line on stderr
and exit with a non-zero status (on every MPI rank). Anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A bad file, flag, shape or value; the message names it and the fix."""

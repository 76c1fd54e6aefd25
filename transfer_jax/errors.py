"""The error a user can fix: `main` prints it as one line and exits non-zero."""


class UserError(ValueError):
  """A bad input (config, data, workdir, device count): the message says what to do."""

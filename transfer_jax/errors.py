"""The errors a user can fix: `main` prints a UserError as one line and exits non-zero, and the
commands that take files and workdirs (sweep, report, plots) parse their flags with the
ArgumentParser below, whose mistakes are one line too."""

import argparse
from typing import NoReturn


class UserError(ValueError):
  """A bad input (config, data, workdir, device count): the message says what to do."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse with a one-line error (what is wrong, and where the flags are listed) instead of
  the usage block."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f'error: {message}; `{self.prog} --help` lists the flags\n')

# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Offline stand-in for the get-pip script that ansible-test downloads.

``ansible-test sanity --venv --requirements`` creates each test's virtualenv without pip and
bootstraps pip with ``get-pip-<version>.py`` from ci-files.testing.ansible.com, a host our
machines cannot reach. ansible-test first looks in ``~/.ansible/test/cache/get_pip_<v>.py``;
``make sanity`` installs this file there, next to the pip wheel of that version (downloaded from
PyPI). Like get-pip, it runs pip from the wheel to install the requested packages.
"""

from __future__ import annotations

import glob
import os
import sys


def main() -> int:
    """Install the packages named on the command line with pip run from the cached wheel."""
    here = os.path.dirname(os.path.abspath(__file__))
    version = os.path.splitext(os.path.basename(__file__))[0].split('_', 2)[2].replace('_', '.')
    wheels = glob.glob(os.path.join(here, 'pip-%s-*.whl' % version))
    if not wheels:
        sys.stderr.write('pip %s wheel missing in %s: run "make sanity"\n' % (version, here))
        return 1
    sys.path.insert(0, wheels[0])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    return pip_main(['install', '--upgrade', '--force-reinstall'] + args)


if __name__ == '__main__':
    sys.exit(main())

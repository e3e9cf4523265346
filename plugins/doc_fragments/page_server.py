# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The page_server option of the modules that checkpoint memory (criu_dump, criu_predump);
    their argument spec is ``_container.page_server_argspec()``."""

    DOCUMENTATION = r'''
options:
  page_server:
    description:
      - Send the memory pages to a CRIU page server (C(criu page-server), usually on the destination)
        instead of writing them into the images directory. The pages then end up in the page server's
        directory, and the C(pages-*.img) are not in this directory's manifest.
      - For pre-dump rounds, the page server must serve each round in turn, in a directory whose parent is
        the previous round's.
    type: dict
    suboptions:
      host:
        description: Address of the page server.
        type: str
        required: true
      port:
        description: TCP port of the page server.
        type: int
        required: true
      tls:
        description: Use TLS towards the page server.
        type: bool
        default: false
      tls_cacert:
        description: CA certificate to verify the page server with.
        type: path
      tls_cert:
        description: Client certificate.
        type: path
      tls_key:
        description: Key of the client certificate.
        type: path
      tls_no_cn_verify:
        description: Do not check the page server's certificate CN.
        type: bool
        default: false
'''

# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What arrived: the images' manifest checked on the receiving side, after a sync.

This is a private module_util: it is not part of the collection's public API.

:data:`VERIFY_SCRIPT` runs on the receiving host (``python3 -``, fed over the same SSH as the
sync, :func:`verify_manifest_remote`) or here (:func:`verify_manifest_local`); a missing file, a
wrong size or a wrong sha256 raises HaulError with step ``verify``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.haul.live.plugins.module_utils._common import MANIFEST, HaulError
from ansible_collections.haul.live.plugins.module_utils._transport import C_LOCALE, _key_line, _tail, explain_rsync_failure

# Run as ``python3 - DIR MANIFEST`` on the receiving host; also exec'd locally by
# verify_manifest_local(). Python 3 only (it runs on the managed hosts' system python3).
# Manifest: {"files": {"rel/name": {"size": N, "sha256": "hex"}, ...}, ...}
# (a list of {"name"|"path": ..., "size": ..., "sha256": ...} is accepted too).
VERIFY_SCRIPT = r'''
import hashlib, json, os, sys


def verify(d, name):
    res = {"dir": d, "checked": 0, "missing": [], "size_mismatch": [], "sha256_mismatch": [],
           "bad_names": [], "error": None}
    try:
        with open(os.path.join(d, name)) as f:
            man = json.load(f)
        files = man["files"]
        if isinstance(files, list):
            files = dict((e.get("name") or e.get("path"), e) for e in files)
        if not isinstance(files, dict):
            raise ValueError("'files' is neither a mapping nor a list")
    except (IOError, OSError) as e:
        res["error"] = "cannot read %s: %s" % (os.path.join(d, name), e.strerror or e)
        return res
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        res["error"] = "%s is not a valid manifest: %s: %s" % (os.path.join(d, name), type(e).__name__, e)
        return res
    for rel in sorted(k for k in files if k):
        meta = files[rel] or {}
        if os.path.isabs(rel) or ".." in rel.split("/"):
            res["bad_names"].append(rel)
            continue
        p = os.path.join(d, rel)
        try:
            st = os.stat(p)
        except OSError:
            res["missing"].append(rel)
            continue
        if meta.get("size") is not None and st.st_size != int(meta["size"]):
            res["size_mismatch"].append(rel)
            continue
        if meta.get("sha256"):
            h = hashlib.sha256()
            try:
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except (IOError, OSError):
                res["missing"].append(rel)
                continue
            if h.hexdigest() != str(meta["sha256"]).lower():
                res["sha256_mismatch"].append(rel)
                continue
        res["checked"] += 1
    return res


if __name__ == "__main__":
    print(json.dumps(verify(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "manifest.json")))
'''


def verify_manifest_local(d, name=MANIFEST):
    """Run the verification of :data:`VERIFY_SCRIPT` here, on directory ``d``; return its dict."""
    ns = {'__name__': 'haul_verify'}
    exec(compile(VERIFY_SCRIPT, '<haul-verify>', 'exec'), ns)  # pylint: disable=exec-used
    return ns['verify'](d, name)


def verify_problems(res, limit=5):
    """One-line description of what a verification result found wrong, or None when all is well."""
    if res.get('error'):
        return res['error']
    parts = []
    for key, what in (('missing', 'missing'), ('size_mismatch', 'wrong size'),
                      ('sha256_mismatch', 'wrong sha256'), ('bad_names', 'unsafe names')):
        names = res.get(key) or []
        if names:
            shown = ', '.join(names[:limit]) + (' ...' if len(names) > limit else '')
            parts.append('%d %s (%s)' % (len(names), what, shown))
    return '; '.join(parts) if parts else None


def verify_manifest_remote(run_command, target, dest, name=MANIFEST, python='python3'):
    """Verify ``dest/name`` on the target host over SSH (``python3 -`` fed :data:`VERIFY_SCRIPT`).

    Return the verification dict (``checked`` count, ...); raise HaulError('verify', ...) when
    the host cannot be reached or a file is missing or differs from the manifest.
    """
    argv = target.remote_argv([python, '-', dest, name])
    rc, out, err = run_command(argv, data=VERIFY_SCRIPT, environ_update=dict(C_LOCALE))
    if rc != 0:
        if rc == 127 or 'not found' in (err or ''):
            cause = '%s is not installed on %s (%s)' % (python, target.host, _key_line(_tail(err)) or 'rc %s' % rc)
        else:
            cause = explain_rsync_failure(rc, err, target.host).replace('rsync exit', 'ssh exit')
        raise HaulError('verify', cause, rc=rc, stderr_tail=_tail(err))
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise HaulError('verify', 'unexpected output from the verification on %s: %r' % (target.host, (out or '')[-200:]),
                        stderr_tail=_tail(err))
    problems = verify_problems(res)
    if problems:
        raise HaulError('verify', 'images on %s:%s do not match %s: %s' % (target.host, dest, name, problems),
                        verification=res)
    return res

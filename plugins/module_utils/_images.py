# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CRIU images directories: creation, manifest, verification, stats.

This is a private module_util: it is not part of the collection's public API.

manifest.json (format 1)
========================

Every images directory that haul.live writes gets a ``manifest.json`` at its
top level. It is written LAST, atomically (``manifest.json.tmp`` then
``rename``), once CRIU has finished successfully, so its presence means "this
directory holds a complete set of images". It is JSON, UTF-8, sorted keys::

    {
      "format": 1,                         # int; readers refuse format > 1
      "kind": "dump",                      # "dump" | "predump" | "lazy"
      "identity": {                        # which container these images are
        "name": "web1",                    #   container name (str)
        "cgroup": "/haul/web1",            #   cgroup v2 path, relative to the cgroup2 mount,
                                           #   always with a leading "/" (str or null)
        "root": "/var/lib/haul/containers/web1/rootfs",  # rootfs on the dumping host (str or null)
        "init_pid": 1234,                  #   host pid of the pid-namespace init at dump time (int)
        "host": "node1"                    #   hostname of the dumping host (str)
      },
      "criu_version": "4.1.1",             # version of the CRIU that wrote the images (str)
      "kernel": "6.18.0-1-amd64",          # uname -r of the dumping host (str)
      "created": "2026-11-25T20:01:02Z",   # UTC, ISO 8601, second precision (str)
      "parent": null,                      # parent images dir as given to CRIU (relative to this
                                           #   dir, like CRIU's "parent" symlink), or null
      "files": {                           # every image file CRIU wrote, by name relative to the
        "core-1.img": {"size": 1234, "sha256": "<64 hex>"},   # images dir (no sub-directories)
        "pages-1.img": {"size": 67112960, "sha256": "<64 hex>"}
      }
    }

Rules (what :func:`verify_manifest` enforces; a receiving host applies the same):

* ``files`` lists every regular file of the directory except the ones haul.live
  or CRIU write after the dump or that are not images: ``manifest.json``,
  ``manifest.json.tmp``, ``*.log``, ``stats-restore`` and ``restore.json``
  (written by a restore into the same directory), ``*.socket`` / ``*.sock`` (lazy-pages
  socket), and anything that is not a regular file (the ``parent`` symlink).
* verify: ``format`` must be 1 and known keys present; every listed file must
  exist, be a regular file, have exactly ``size`` bytes and the ``sha256``; an
  ``*.img`` file present in the directory but not listed is an error too
  (images from another dump mixed in). Temporary files of a transfer that do
  not end in ``.img`` are ignored.
* ``kind``: ``dump`` is a full dump restorable by itself (with its ``parent``
  chain, if any); ``predump`` is a pre-dump round usable only as a parent;
  ``lazy`` is a dump whose memory pages stay on the source (served by its page
  server until the destination has pulled them): its ``pages-*.img`` hold only the
  few pages that cannot be served lazily (32 KiB for the lab's 64 MiB container).
* A dump made with a remote page server has no ``pages-*.img`` in its own
  directory either: the pages live in the page server's directory.
* ``sha256`` may be null when the dump was made with ``checksum: none`` (to keep
  the freeze short for very large containers); verify then checks the size only.
* The dumping CRIU version matters to the restorer: a host whose CRIU is older
  than ``criu_version`` must refuse to restore.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import datetime
import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import struct

from ansible_collections.haul.live.plugins.module_utils._cgroup import _unescape_mountinfo
from ansible_collections.haul.live.plugins.module_utils._common import MANIFEST, HaulError, is_no_space, \
    no_space_error, write_json_atomic
from ansible_collections.haul.live.plugins.module_utils._criu import compare_versions

MANIFEST_TMP = 'manifest.json.tmp'
# The directory's own marker: haul.live made this directory, for this migration, on this host.
# Clean-up removes only directories that carry it (see remove_ours).
MARKER = '.haul-images'
MARKER_TMP = MARKER + '.tmp'
MADE_BY = 'haul.live'
FORMAT = 1
KINDS = ('dump', 'predump', 'lazy')
DIR_MODE = 0o700
# network: the container's veths, addresses and bridges (_network.describe), for the restore
IDENTITY_KEYS = ('name', 'cgroup', 'root', 'init_pid', 'host', 'network')
_EXCLUDED_NAMES = (MANIFEST, MANIFEST_TMP, 'stats-restore', 'stats-restore.img', 'restore.json',
                   'restore.json.tmp', MARKER, MARKER_TMP)
_EXCLUDED_SUFFIXES = ('.log', '.socket', '.sock')
_CHUNK = 1024 * 1024

# CRIU image magics (criu/include/magic.h)
_IMG_COMMON = 0x54564319
_IMG_SERVICE = 0x55105940
_STATS_MAGIC = 0x57093306

# stats.proto: field number -> name (all varints)
_DUMP_STATS = {1: 'freezing_time', 2: 'frozen_time', 3: 'memdump_time', 4: 'memwrite_time',
               5: 'pages_scanned', 6: 'pages_skipped_parent', 7: 'pages_written', 8: 'irmap_resolve',
               9: 'pages_lazy', 10: 'page_pipes', 11: 'page_pipe_bufs', 12: 'shpages_scanned',
               13: 'shpages_skipped_parent', 14: 'shpages_written'}
_RESTORE_STATS = {1: 'pages_compared', 2: 'pages_skipped_cow', 3: 'forking_time', 4: 'restore_time',
                  5: 'pages_restored'}


# --------------------------------------------------------------------------- directory

def ensure_dir(path, migration_id=None, mark=True):
    """Create ``path`` (and parents) with mode 0700, or fix the mode of an existing one; with
    ``mark``, give it haul.live's marker (:data:`MARKER`: made by haul.live, ``migration_id``,
    this host).

    An existing directory gets the marker only when it has one already (it is then re-stamped
    with ``migration_id``) or holds nothing but what haul.live and CRIU write: a directory with
    foreign files is never adopted (the caller's ``clear_images``/``require_usable`` then refuses
    it), so that clean-up never deletes it.

    Returns True when something changed (created, chmod or marked).
    """
    changed = False
    created = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise HaulError('images', '%s exists and is not a directory' % path)
        try:
            os.makedirs(path, DIR_MODE)
        except OSError as e:
            if is_no_space(e):
                raise no_space_error('images', path, e, 'a new images directory')
            raise HaulError('images', 'cannot create %s: %s' % (path, e.strerror or e))
        changed = created = True
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != DIR_MODE:
        try:
            os.chmod(path, DIR_MODE)
        except OSError as e:
            raise HaulError('images', 'cannot chmod %s to 0700: %s' % (path, e.strerror or e))
        changed = True
    if mark:
        old = read_marker(path)
        if old is not None and old.get('migration_id') == migration_id and old.get('host') == _host():
            return changed
        if created or old is not None or not foreign_entries(path):
            write_marker(path, migration_id)
            changed = True
    return changed


def _host():
    return socket.gethostname()


def marker_path(path):
    return os.path.join(path, MARKER)


def write_marker(path, migration_id=None, step='images'):
    """Write ``path``/.haul-images (atomically, 0600): ``{"made_by": "haul.live", "format": 1,
    "migration_id", "host", "created"}``. A full disk is a clear error (``no space left on HOST``)."""
    data = {'made_by': MADE_BY, 'format': 1, 'migration_id': migration_id, 'host': _host(),
            'created': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}
    write_json_atomic(marker_path(path), data, step, what="the images directory's marker")
    return data


def read_marker(path):
    """The marker of directory ``path`` (a dict), or None when it has none or not haul.live's."""
    try:
        with open(marker_path(path)) as f:
            data = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get('made_by') != MADE_BY:
        return None
    return data


def is_ours(path, migration_id=None):
    """(True, marker) when directory ``path`` carries haul.live's marker (and, when
    ``migration_id`` is given, that migration's); else (False, why)."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False, '%s is not a directory' % path
    marker = read_marker(path)
    if marker is None:
        return False, '%s has no haul.live marker (%s): haul.live did not make it' % (path, MARKER)
    if migration_id and marker.get('migration_id') != migration_id:
        return False, '%s was made by migration %s, not %s' % (path, marker.get('migration_id'), migration_id)
    return True, marker


def remove_ours(path, migration_id=None, check_mode=False):
    """Remove directory ``path`` only when its marker says haul.live made it (for
    ``migration_id``, when given). Returns ``(removed, why_kept)``: ``(False, None)`` when
    ``path`` does not exist; ``(False, why)`` when it is kept (no marker, another migration's,
    not a directory)."""
    if not os.path.lexists(path):
        return False, None
    ok, why = is_ours(path, migration_id)
    if not ok:
        return False, why
    if not check_mode:
        remove(path)
    return True, None


def precopy_dir(images_dir):
    """Where a migration keeps its pre-copy rounds: ``<images_dir>.precopy`` (the same on both hosts).

    A sibling of the images directory, so that the final dump's ``parent`` link
    (``../NAME.precopy/round-N``, relative) resolves the same way on the destination.
    """
    return images_dir.rstrip('/') + '.precopy'


# Directories CRIU or rsync leave in an images directory when they are killed mid-way: CRIU's
# cgroup yard (still mounted, in the host's mount namespace) and rsync's partial-dir.
_LEFTOVER_DIR_PREFIXES = ('.criu.cgyard.', '.haul-partial')


def release_mounts(path, mountinfo='/proc/self/mountinfo'):
    """Detach every mount below ``path`` (a killed CRIU leaves its cgroup yard mounted there).

    Returns the mount points detached, deepest first.
    """
    prefix = os.path.realpath(path).rstrip('/') + '/'
    try:
        with open(mountinfo) as f:
            points = [_unescape_mountinfo(line.split()[4]) for line in f if len(line.split()) > 4]
    except (IOError, OSError):
        return []
    below = sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
    if below:
        libc = ctypes.CDLL(None, use_errno=True)
        for p in below:
            if libc.umount2(p.encode(), 2) != 0:  # MNT_DETACH
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):
                    raise HaulError('images', 'cannot unmount %s (left by a killed CRIU): %s'
                                    % (p, os.strerror(err)))
    return below


def remove(path):
    """Remove an images directory (releasing what a killed CRIU left mounted in it); True if it existed."""
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        release_mounts(path)
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return True


def is_image_file(name):
    """Whether a file name in an images dir belongs in the manifest's ``files``."""
    return name not in _EXCLUDED_NAMES and not name.endswith(_EXCLUDED_SUFFIXES)


def image_files(path):
    """Sorted names of the regular files of ``path`` that the manifest lists."""
    out = []
    for name in os.listdir(path):
        st = os.lstat(os.path.join(path, name))
        if stat.S_ISREG(st.st_mode) and is_image_file(name):
            out.append(name)
    return sorted(out)


def images_bytes(path):
    """Total bytes (apparent size) of the image files of ``path``."""
    total = 0
    for name in image_files(path):
        total += os.lstat(os.path.join(path, name)).st_size
    return total


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- manifest

def make_identity(name, cgroup=None, root=None, init_pid=None, host=None, network=None):
    if cgroup is not None and not cgroup.startswith('/'):
        cgroup = '/' + cgroup
    return {'name': name, 'cgroup': cgroup, 'root': root, 'init_pid': init_pid,
            'host': host if host is not None else socket.gethostname(), 'network': network}


def build_manifest(path, kind, identity, criu_version, kernel=None, parent=None, created=None,
                   checksums=True):
    """The manifest dict for the images in ``path`` (computes every checksum unless told not to)."""
    if kind not in KINDS:
        raise HaulError('manifest', 'kind must be one of %s, not %r' % (', '.join(KINDS), kind))
    files = {}
    for name in image_files(path):
        full = os.path.join(path, name)
        files[name] = {'size': os.lstat(full).st_size, 'sha256': sha256_file(full) if checksums else None}
    if created is None:
        created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return {
        'format': FORMAT,
        'kind': kind,
        'identity': dict((k, identity.get(k)) for k in IDENTITY_KEYS),
        'criu_version': criu_version,
        'kernel': kernel if kernel is not None else os.uname()[2],
        'created': created,
        'parent': parent,
        'files': files,
    }


def write_manifest(path, manifest):
    """Write manifest.json atomically (tmp + fsync + rename), mode 0600."""
    tmp = os.path.join(path, MANIFEST_TMP)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(path, MANIFEST))
    except (IOError, OSError) as e:
        if is_no_space(e):
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise no_space_error('manifest', os.path.join(path, MANIFEST), e, 'the manifest of the images')
        raise
    return os.path.join(path, MANIFEST)


def create_manifest(path, kind, identity, criu_version, kernel=None, parent=None, checksums=True):
    """build_manifest + write_manifest; returns the manifest."""
    manifest = build_manifest(path, kind, identity, criu_version, kernel=kernel, parent=parent,
                              checksums=checksums)
    write_manifest(path, manifest)
    return manifest


def load_manifest(path, step='verify'):
    """The manifest of images dir ``path``; HaulError(step, ...) when missing or unreadable."""
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isdir(path):
        raise HaulError(step, 'images directory %s does not exist' % path)
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except (IOError, OSError) as e:
        if getattr(e, 'errno', None) == 2:
            raise HaulError(step, '%s has no %s: not a complete haul.live dump' % (path, MANIFEST))
        raise HaulError(step, 'cannot read %s: %s' % (mpath, e))
    except ValueError as e:
        raise HaulError(step, '%s is not valid JSON: %s' % (mpath, e))
    if not isinstance(manifest, dict):
        raise HaulError(step, '%s is not a JSON object' % mpath)
    fmt = manifest.get('format')
    if fmt != FORMAT:
        raise HaulError(step, '%s has format %r, this haul.live reads format %d' % (mpath, fmt, FORMAT))
    for key in ('kind', 'identity', 'criu_version', 'files'):
        if key not in manifest:
            raise HaulError(step, '%s lacks %r' % (mpath, key))
    if manifest['kind'] not in KINDS or not isinstance(manifest['files'], dict) \
            or not isinstance(manifest['identity'], dict):
        raise HaulError(step, '%s is malformed' % mpath)
    return manifest


def verify_manifest(path, checksums=True, step='verify'):
    """Check that ``path`` holds exactly the images its manifest lists; returns the manifest.

    Raises HaulError(step, ...) naming the first missing, resized, corrupt or
    unexpected file.
    """
    manifest = load_manifest(path, step=step)
    for name in sorted(manifest['files']):
        meta = manifest['files'][name]
        if os.path.basename(name) != name or name in ('.', '..'):
            raise HaulError(step, 'manifest of %s lists an invalid file name %r' % (path, name))
        full = os.path.join(path, name)
        try:
            st = os.lstat(full)
        except OSError:
            raise HaulError(step, 'image file %s is missing from %s' % (name, path), file=name)
        if not stat.S_ISREG(st.st_mode):
            raise HaulError(step, 'image file %s in %s is not a regular file' % (name, path), file=name)
        if st.st_size != meta.get('size'):
            raise HaulError(step, 'image file %s in %s has %d bytes, the manifest says %s'
                            % (name, path, st.st_size, meta.get('size')), file=name)
        if checksums and meta.get('sha256') and sha256_file(full) != meta.get('sha256'):
            raise HaulError(step, 'image file %s in %s is corrupt (sha256 mismatch)' % (name, path), file=name)
    for name in image_files(path):
        if name.endswith('.img') and name not in manifest['files']:
            raise HaulError(step, '%s holds %s, which its manifest does not list (images of another dump?)'
                            % (path, name), file=name)
    return manifest


def same_identity(a, b, keys=('name', 'cgroup')):
    """Whether two identities name the same container (by name and cgroup by default)."""
    return all((a or {}).get(k) == (b or {}).get(k) for k in keys)


def is_complete_dump(path, identity, checksums=True, keys=('name', 'cgroup')):
    """(True, manifest) when ``path`` holds a complete, verified dump of ``identity``, else (False, reason)."""
    try:
        manifest = verify_manifest(path, checksums=checksums)
    except HaulError as e:
        return False, e.cause
    if manifest['kind'] != 'dump':
        return False, 'images are a %s, not a dump' % manifest['kind']
    if not same_identity(manifest['identity'], identity, keys):
        return False, 'images are of %s, not %s' % (
            dict((k, manifest['identity'].get(k)) for k in keys), dict((k, identity.get(k)) for k in keys))
    return True, manifest


def check_restorable(manifest, criu_version, step='restore'):
    """Refuse when this host's CRIU is older than the one that wrote the images."""
    dumper = manifest.get('criu_version')
    try:
        older = compare_versions(criu_version, dumper) < 0
    except ValueError:
        raise HaulError(step, 'manifest has an unreadable criu_version %r' % (dumper,))
    if older:
        raise HaulError(step, 'images were dumped by CRIU %s, this host has CRIU %s (older): '
                        'upgrade criu here' % (dumper, criu_version))
    if manifest.get('kind') == 'predump':
        raise HaulError(step, 'images are a pre-dump round, not a dump')


# --------------------------------------------------------------------------- stats

def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError('truncated varint')
        b = buf[pos]
        pos += 1
        result |= (b & 0x7f) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _decode_message(buf):
    """Minimal protobuf decoder: {field_number: value}; varints as int, length-delimited as bytes."""
    out = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            val = buf[pos:pos + size]
            pos += size
        elif wire == 1:
            val = buf[pos:pos + 8]
            pos += 8
        elif wire == 5:
            val = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError('unsupported wire type %d' % wire)
        out[num] = val
    return out


def decode_stats(data):
    """Decode a stats-dump.img / stats-restore.img: {'dump': {...}} and/or {'restore': {...}}.

    Times are microseconds as CRIU records them. Decoded without pycriu.
    """
    if len(data) < 12:
        raise ValueError('stats image too short')
    pos = 0
    magic, = struct.unpack_from('<I', data, pos)
    pos += 4
    if magic in (_IMG_COMMON, _IMG_SERVICE):
        magic, = struct.unpack_from('<I', data, pos)
        pos += 4
    if magic != _STATS_MAGIC:
        raise ValueError('not a stats image (magic 0x%08x)' % magic)
    size, = struct.unpack_from('<I', data, pos)
    pos += 4
    entry = _decode_message(data[pos:pos + size])
    out = {}
    for num, key, names in ((1, 'dump', _DUMP_STATS), (2, 'restore', _RESTORE_STATS)):
        if num in entry:
            fields = _decode_message(entry[num])
            out[key] = dict((names[n], v) for n, v in fields.items() if n in names and isinstance(v, int))
    return out


def read_stats(path, kind='dump'):
    """Stats of ``kind`` ('dump' or 'restore') from images dir ``path``, or {} if absent/unreadable."""
    for fname in ('stats-%s' % kind, 'stats-%s.img' % kind):
        try:
            with open(os.path.join(path, fname), 'rb') as f:
                return decode_stats(f.read()).get(kind, {})
        except (IOError, OSError, ValueError, struct.error):
            continue
    return {}


def summarize_stats(stats, page_size=4096):
    """Add human-friendly fields (ms, bytes) next to CRIU's raw stats (usec, pages)."""
    out = dict(stats)
    for key in list(stats):
        if key.endswith('_time'):
            out[key[:-5] + '_ms'] = round(stats[key] / 1000.0, 3)
    if 'pages_written' in stats:
        out['bytes_written'] = stats['pages_written'] * page_size
    return out


# --------------------------------------------------------------------------- dump preparation

def _is_leftover(name, full):
    """Files a previous (partial) dump may have left: safe to delete before a new dump."""
    if name == 'parent' and os.path.islink(full):
        return True
    if name.startswith(_LEFTOVER_DIR_PREFIXES) and os.path.isdir(full) and not os.path.islink(full):
        return True
    if not os.path.isfile(full) or os.path.islink(full):
        return False
    return (name.endswith('.img') or name.endswith('.log') or name.startswith('stats-')
            or name in _EXCLUDED_NAMES)


def foreign_entries(path):
    """Entries of ``path`` that are not CRIU images, logs, manifest or the parent link."""
    if not os.path.isdir(path):
        return []
    return sorted(n for n in os.listdir(path) if not _is_leftover(n, os.path.join(path, n)))


def clear_images(path, step='images'):
    """Empty an images dir of a previous dump's files before a new dump; refuse foreign files."""
    foreign = foreign_entries(path)
    if foreign:
        raise HaulError(step, '%s holds files that are not CRIU images (%s): use an empty or dedicated '
                        'images directory' % (path, ', '.join(foreign[:5])))
    release_mounts(path)
    removed = 0
    for name in os.listdir(path):
        if name == MARKER:
            continue  # the directory's own marker stays
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
        removed += 1
    return removed


def existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_bytes(path):
    """Free bytes (f_bavail, the conservative figure) of the filesystem that holds or would hold ``path``."""
    st = os.statvfs(existing_ancestor(path))
    return st.f_bavail * st.f_frsize


def require_usable(path):
    """Refuse (HaulError 'images') an images directory that cannot be created or written, or that
    holds files that are not CRIU images (a dump clears only what CRIU wrote)."""
    ok, why = can_create(path)
    if not ok:
        raise HaulError('images', why)
    foreign = foreign_entries(path)
    if foreign:
        raise HaulError('images', '%s holds files that are not CRIU images (%s): use an empty or dedicated images '
                        'directory' % (path, ', '.join(foreign[:5])))


def require_space(path, estimate, what):
    """The free bytes of the filesystem of ``path``; HaulError('space', ...) when below ``estimate``
    (``what`` names what needs it, e.g. ``the dump of web1``)."""
    free = free_bytes(path)
    if free < estimate:
        raise HaulError('space', 'the filesystem of %s has %d MiB free, %s needs about %d MiB'
                        % (path, free // 1048576, what, -(-estimate // 1048576)))
    return free


def can_create(path):
    """(True, None) when ``path`` exists as a writable dir or could be created; else (False, why)."""
    if os.path.isdir(path):
        return (True, None) if os.access(path, os.W_OK | os.X_OK) else (False, '%s is not writable' % path)
    if os.path.lexists(path):
        return False, '%s exists and is not a directory' % path
    anc = existing_ancestor(path)
    if not os.path.isdir(anc):
        return False, '%s is not a directory' % anc
    if not os.access(anc, os.W_OK | os.X_OK):
        return False, '%s is not writable' % anc
    return True, None


# --------------------------------------------------------------------------- the images root on tmpfs

# A tmpfs for the images root when the memory allows it: MemAvailable must be at least twice the
# container's memory (its images on the tmpfs, plus its restored copy on a destination) plus
# this reserve for everything else.
TMPFS_RESERVE_BYTES = 256 * 1024 * 1024
TMPFS_TYPES = ('tmpfs', 'ramfs')
TMPFS_CHOICES = ('auto', 'true', 'false')
TMPFS_OPTIONS = 'mode=0700,size=50%'
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def mount_of(path, mountinfo='/proc/self/mountinfo'):
    """``(mount point, fs type)`` of the filesystem that holds (or would hold) ``path``."""
    real = os.path.realpath(path)
    best = ('/', None)
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                if ' - ' not in line or len(fields) < 5:
                    continue
                point = _unescape_mountinfo(fields[4])
                fstype = line.split(' - ', 1)[1].split()[0]
                inside = real == point or real.startswith(point.rstrip('/') + '/')
                # the last matching line of the longest point is the mount on top
                if inside and len(point) >= len(best[0]):
                    best = (point, fstype)
    except (IOError, OSError):
        pass
    return best


def mem_available(meminfo='/proc/meminfo'):
    """MemAvailable in bytes (or None when unreadable)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (IOError, OSError, ValueError, IndexError):
        pass
    return None


def tmpfs_need(memory_bytes):
    """The MemAvailable a tmpfs images root needs for a container of ``memory_bytes``."""
    return 2 * max(int(memory_bytes or 0), 0) + TMPFS_RESERVE_BYTES


def _mount_tmpfs(root):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b'haul-images', root.encode(), b'tmpfs', _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                  TMPFS_OPTIONS.encode()) != 0:
        err = ctypes.get_errno()
        raise HaulError('images', 'cannot mount a tmpfs on %s: %s' % (root, os.strerror(err)))


def _locked(lock_path):
    """An open, flock'ed file (close it to unlock), so that two migrations never mount twice."""
    import fcntl  # pylint: disable=import-outside-toplevel
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def prepare_root(root, tmpfs='auto', memory_bytes=0, check_mode=False, mountinfo='/proc/self/mountinfo',
                 meminfo='/proc/meminfo', lock_dir='/run', mount_fn=None):
    """Make the images root ``root`` (mode 0700), on a tmpfs when ``tmpfs`` (auto|true|false) and
    the memory allow it, so that nothing of a container's memory reaches a disk.

    * already on a tmpfs (or ramfs): used as it is;
    * ``false``: left on its filesystem;
    * ``auto``/``true``: a tmpfs (``mode=0700,size=50%``, nosuid, nodev, noexec) is mounted on
      ``root`` when MemAvailable >= :func:`tmpfs_need` and ``root`` is empty (a tmpfs would hide
      what it holds). It stays mounted (it holds nothing between migrations); a reboot or
      ``umount`` ends it. When that cannot be, ``auto`` goes on on disk and says why in ``note``;
      ``true`` refuses (HaulError 'images').

    Returns ``{'root', 'on_tmpfs', 'mounted', 'fstype', 'mount_point', 'mem_available',
    'need_bytes', 'note', 'changed'}``.
    """
    tmpfs = str(tmpfs).lower()
    if tmpfs in ('yes', 'on', '1'):
        tmpfs = 'true'
    elif tmpfs in ('no', 'off', '0'):
        tmpfs = 'false'
    if tmpfs not in TMPFS_CHOICES:
        raise HaulError('images', 'images on tmpfs must be one of auto, true, false, not %r' % tmpfs)
    root = os.path.abspath(root)
    need = tmpfs_need(memory_bytes)
    avail = mem_available(meminfo)
    res = {'root': root, 'on_tmpfs': False, 'mounted': False, 'changed': False, 'mem_available': avail,
           'need_bytes': need, 'note': ''}
    lock = None
    try:
        if not check_mode and tmpfs != 'false':
            try:
                lock = _locked(os.path.join(lock_dir if os.path.isdir(lock_dir) else existing_ancestor(root),
                                            'haul-images-root.lock'))
            except OSError:
                lock = None
        point, fstype = mount_of(root, mountinfo)
        res.update(mount_point=point, fstype=fstype)
        if fstype in TMPFS_TYPES:
            res.update(on_tmpfs=True, note='%s is on a %s (%s)' % (root, fstype, point))
        elif tmpfs == 'false':
            res['note'] = 'images on disk (%s on %s): haul_images_on_tmpfs is false' % (root, fstype)
        else:
            why = None
            if avail is None:
                why = 'MemAvailable cannot be read'
            elif avail < need:
                why = ('%d MiB of memory available, a tmpfs needs %d MiB (twice the container\'s %d MiB, plus %d MiB)'
                       % (avail // 1048576, -(-need // 1048576), int(memory_bytes or 0) // 1048576,
                          TMPFS_RESERVE_BYTES // 1048576))
            elif os.path.isdir(root) and os.listdir(root):
                why = '%s is not empty (%s): a tmpfs would hide it' % (root, ', '.join(sorted(os.listdir(root))[:5]))
            elif os.path.lexists(root) and not os.path.isdir(root):
                why = '%s is not a directory' % root
            if why and tmpfs == 'true':
                raise HaulError('images', 'cannot put the images root %s on a tmpfs (haul_images_on_tmpfs is true): %s'
                                % (root, why))
            if why:
                res['note'] = 'images on disk (%s on %s): %s' % (root, fstype, why)
            else:
                res.update(on_tmpfs=True, mounted=True, changed=True, fstype='tmpfs', mount_point=root,
                           note='%s a tmpfs on %s (%d MiB of memory available, %d MiB needed)'
                           % ('would mount' if check_mode else 'mounted', root, avail // 1048576, -(-need // 1048576)))
                if not check_mode:
                    ensure_dir(root, mark=False)
                    (mount_fn or _mount_tmpfs)(root)
        if not check_mode:
            if ensure_dir(root, mark=False):
                res['changed'] = True
    finally:
        if lock is not None:
            os.close(lock)
    return res

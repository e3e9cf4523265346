# -*- coding: utf-8 -*-
# Copyright (c) haul.live contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The relay: runs on the destination, in the source's SSH session (private module_util).

:class:`.protocol.Relay` sends this file's source text to the destination's ``python3`` as
``python3 -c SOURCE CONTROL_DIR TIMEOUT``: nothing of the collection needs to be installed
there, and this file imports only the standard library. Importing it does nothing.

Lines on stdin (commands) become files in CONTROL_DIR; every change of CONTROL_DIR/status.json
becomes a JSON line on stdout. It ends at a final state. If the source goes away (EOF) before it
sent commit, it writes abort (a source that is gone must not leave a destination copy that could
resume), and ends.

It also receives small images directories on the same stream (``Relay.send_dir``: no rsync, no
new process, no new SSH channel inside the freeze): ``dir {"path"}`` empties (or creates, mode
0700) that directory, ``file {"name", "size", "mode", "mtime"}`` is followed by the file's bytes,
``link {"name", "target"}`` makes a symlink. If one cannot be written, the relay writes abort
(the destination restores nothing from an incomplete directory), reports a final failure and
ends.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import sys
import time


class _Relay(object):
    """The relay's state: the control directory, the commands' stream, a file being written."""

    def __init__(self, ctl, timeout):
        self.ctl, self.timeout = ctl, timeout
        self.deadline = time.time() + timeout
        self.last, self.committed, self.buf = None, False, b''
        self.into, self.out, self.left, self.meta = None, None, 0, None
        self.swake = None

    def put(self, name):
        p = os.path.join(self.ctl, name)
        try:
            with open(p + '.tmp', 'w') as f:
                f.write('%f\n' % time.time())
            os.rename(p + '.tmp', p)
        except (IOError, OSError):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))  # a full disk: the name is what counts
        try:
            fd = os.open(os.path.join(self.ctl, 'wake'), os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b'.')
            finally:
                os.close(fd)
        except OSError:
            pass

    def fail(self, msg):
        try:
            if not self.committed and os.path.isdir(self.ctl):
                self.put('abort')
        except (IOError, OSError):
            pass
        sys.stdout.write(json.dumps({'state': 'failed', 'final': True, 'step': 'sync', 'msg': 'relay: ' + msg}) + '\n')
        sys.stdout.flush()
        raise SystemExit(0)

    def entry(self, kind, m):
        if kind == 'dir':
            d = m['path']
            if not os.path.isabs(d) or os.path.normpath(d) == '/':
                raise ValueError('refusing to fill %r' % d)
            if os.path.isdir(d):
                for n in os.listdir(d):
                    p = os.path.join(d, n)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p)
                    else:
                        os.unlink(p)
            else:
                os.makedirs(d, 0o700)
            self.into = d
            return
        name = m['name']
        if self.into is None or not name or '/' in name or name in ('.', '..'):
            raise ValueError('bad entry %r' % name)
        p = os.path.join(self.into, name)
        if kind == 'link':
            os.symlink(m['target'], p)
            return
        self.out = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.left, self.meta = int(m['size']), (p, m)
        if not self.left:
            self.close()

    def close(self):
        os.close(self.out)
        p, m = self.meta
        os.chmod(p, m['mode'])
        os.utime(p, (m['mtime'], m['mtime']))
        self.out, self.meta = None, None

    def status(self):
        """Pass on a changed status.json; True when it is a final one."""
        try:
            with open(os.path.join(self.ctl, 'status.json')) as f:
                st = f.read()
        except (IOError, OSError):
            st = None
        if st and st != self.last:
            self.last = st
            self.deadline = time.time() + self.timeout  # a destination that still reports (post-copy progress) keeps it
            sys.stdout.write(st.strip() + '\n')
            sys.stdout.flush()
            if json.loads(st).get('final'):
                return True
        return False

    def consume(self):
        """Write what came on the stream: file bytes, commands, entries."""
        doing = 'write the images'
        try:
            while self.buf:
                if self.left:
                    chunk, self.buf = self.buf[:self.left], self.buf[self.left:]
                    self.left -= len(chunk)
                    while chunk:
                        chunk = chunk[os.write(self.out, chunk):]
                    if not self.left:
                        self.close()
                    continue
                if b'\n' not in self.buf:
                    break
                line, self.buf = self.buf.split(b'\n', 1)
                cmd, dummy, arg = line.decode().strip().partition(' ')
                if cmd in ('synced', 'commit', 'abort'):
                    self.committed = self.committed or cmd == 'commit'
                    doing = 'pass on ' + cmd
                    self.put(cmd)
                elif cmd in ('dir', 'file', 'link'):
                    doing = 'write the images'
                    self.entry(cmd, json.loads(arg))
        except (IOError, OSError, ValueError, KeyError, TypeError) as e:
            self.fail('cannot %s: %s' % (doing, e))

    def run(self):
        while True:
            if self.swake is None:
                try:
                    self.swake = os.open(os.path.join(self.ctl, 'status.wake'), os.O_RDWR | os.O_NONBLOCK)
                except OSError:
                    pass
            if self.status():
                break
            watched = [0] + ([self.swake] if self.swake is not None else [])
            ready = select.select(watched, [], [], 0.002 if self.swake is None else 0.05)[0]
            if self.swake in ready:
                try:
                    while os.read(self.swake, 4096):
                        pass
                except OSError:
                    pass
            if 0 in ready:
                data = os.read(0, 1 << 20)
                if not data:
                    # nobody listens any more; without a commit, the destination must not resume
                    if not self.committed and os.path.isdir(self.ctl):
                        self.put('abort')
                    break
                self.buf += data
                self.consume()
            if time.time() > self.deadline:
                sys.stdout.write(json.dumps({'state': 'failed', 'final': True,
                                             'msg': 'relay: no final state within %ds' % self.timeout}) + '\n')
                break


def main(argv):
    """``argv``: CONTROL_DIR TIMEOUT."""
    _Relay(argv[0], float(argv[1])).run()


if __name__ == '__main__':
    main(sys.argv[1:])

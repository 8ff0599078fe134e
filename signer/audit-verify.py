#!/usr/bin/env python3
"""Independent verifier for keyless-signer audit logs (python3 standard library only).

usage: audit-verify.py [--expect-head HEX] FILE...   (oldest file first)
       audit-verify.py --batch   (tests: one check per stdin line, "HEX-or-minus<TAB>FILE<TAB>FILE...",
                                  one "STATUS REPORT" line out per check)

Written from docs/AUDIT.md, not from the C code, so that an auditor can check a log
without trusting the signer. It checks the hash chain only: the signed checkpoints
(ECDSA P-256, which the standard library cannot verify) are checked by
`keyless-signer audit-verify --pubkey`. Like it, it refuses an empty log (no start record). Exit status: 0 chain good, 1 chain bad, 2 usage or I/O.
Prints "OK: N records, seq A..B, head HEX" or "FAIL: FILE:LINE: what".
"""
import hashlib
import json
import re
import sys

GENESIS = "0" * 64
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
MAX_LINE = 1024 * 1024
MAX_MEMBERS = 40
TAIL = len(',"hash":"') + 64 + len('"}')


class Bad(Exception):
    pass


class Obj(list):
    """A JSON object as its list of (name, value) pairs, in order."""


def enc_str(s):
    """The canonical string encoding: printable ASCII as is, \\" and \\\\, else \\u00xx."""
    out = []
    for ch in s:
        o = ord(ch)
        if o > 0xFF:
            raise Bad("string holds a code point above U+00FF")
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o <= 0x7E:
            out.append(ch)
        else:
            out.append("\\u%04x" % o)
    return '"' + "".join(out) + '"'


def enc_val(v):
    if v is None:
        return "null"
    if type(v) is int:
        return str(v)
    if type(v) is str:
        return enc_str(v)
    raise Bad("value of an unexpected JSON type")


def check_line(raw):
    """Check one line on its own (without its newline); return its members as a dict."""
    if len(raw) > MAX_LINE:
        raise Bad("line longer than %d bytes" % MAX_LINE)
    for i, b in enumerate(raw):
        if b < 0x20 or b > 0x7E:
            raise Bad("byte 0x%02x at column %d is not printable ASCII" % (b, i + 1))
    text = raw.decode("ascii")
    try:
        pairs = json.loads(text, object_pairs_hook=Obj)
    except (ValueError, RecursionError) as e:
        raise Bad("malformed JSON (%s)" % e)
    if type(pairs) is not Obj:
        raise Bad("not a JSON object")
    if len(pairs) > MAX_MEMBERS:
        raise Bad("more than %d members" % MAX_MEMBERS)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Bad("duplicate member")
    canon = "{" + ",".join(enc_str(k) + ":" + enc_val(v) for k, v in pairs) + "}"
    if canon != text:
        raise Bad("not in canonical form")
    if keys[-2:] != ["prev", "hash"]:
        raise Bad('the last two members are not "prev" and "hash"')
    rec = dict(pairs)
    if rec.get("v") != 1 or type(rec.get("v")) is not int:
        raise Bad("unsupported format version")
    seq = rec.get("seq")
    if type(seq) is not int or not 1 <= seq < 2**64:
        raise Bad("seq is not a positive integer")
    for k in ("prev", "hash"):
        if type(rec[k]) is not str or not HEX64.match(rec[k]):
            raise Bad('"%s" is not 64 lowercase hex digits' % k)
    if "rotated_from" in rec and type(rec["rotated_from"]) is not str:
        raise Bad("rotated_from is not a string")
    if hashlib.sha256(raw[:-TAIL]).hexdigest() != rec["hash"]:
        raise Bad("hash does not match the line's content (line edited)")
    return rec


def verify(paths, expect_head=None):
    records, first_seq, last_seq, head, anchored = 0, 0, 0, GENESIS, True
    for fi, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                # Zeros after the last newline are the space the signer keeps ahead of
                # its records (or a crash left), not a record; a torn line before them
                # is still reported.
                data = f.read().rstrip(b"\0")
        except OSError as e:
            return 2, "FAIL: %s:0: cannot open: %s" % (path, e.strerror)
        lines = data.split(b"\n")
        complete = lines[:-1]
        torn = lines[-1]
        for ln, raw in enumerate(complete + ([torn] if torn else []), 1):
            try:
                if ln > len(complete):
                    raise Bad("incomplete line (no newline at end of file)")
                rec = check_line(raw)
                rot = "rotated_from" in rec
                if rot and ln != 1:
                    raise Bad("rotated_from on a line that is not the first of its file")
                if records == 0:
                    if rot:
                        anchored = False
                    elif rec["prev"] != GENESIS or rec["seq"] != 1:
                        raise Bad("first record does not start a fresh log and is not a rotation record")
                else:
                    if ln == 1 and not rot:
                        raise Bad("file does not begin with a rotation record continuing the previous file")
                    if rec["prev"] != head:
                        raise Bad("prev does not match the hash of the previous record")
                    if rec["seq"] != last_seq + 1:
                        raise Bad("seq %d where %d was expected" % (rec["seq"], last_seq + 1))
            except Bad as e:
                return 1, "FAIL: %s:%d: %s" % (path, ln, e)
            if records == 0:
                first_seq = rec["seq"]
            records += 1
            last_seq = rec["seq"]
            head = rec["hash"]
    if records == 0:
        return 1, "FAIL: %s:end: no records: an empty log has no start record" % (paths[-1] if paths else "(no file)")
    if expect_head is not None and expect_head != head:
        return 1, "FAIL: %s:end: head %s is not the expected %s" % (paths[-1], head, expect_head)
    note = "" if anchored else ", unanchored start (first file continues a rotated file)"
    return 0, "OK: %d records, seq %d..%d, head %s%s" % (records, first_seq, last_seq, head, note)


def main(argv):
    args = argv[1:]
    expect = None
    if args == ["--batch"]:
        for line in sys.stdin:
            fields = line.rstrip("\n").split("\t")
            head = None if fields[0] == "-" else fields[0]
            status, message = verify(fields[1:], head)
            print(status, message, flush=True)
        return 0
    if args[:1] == ["--expect-head"]:
        if len(args) < 2 or not HEX64.match(args[1]):
            print("audit-verify: --expect-head needs 64 lowercase hex digits", file=sys.stderr)
            return 2
        expect, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: audit-verify.py [--expect-head HEX] FILE... (oldest file first)", file=sys.stderr)
        return 2
    status, message = verify(args, expect)
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))

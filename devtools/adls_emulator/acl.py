"""POSIX access control lists as Data Lake Storage Gen2 uses them.

An ACL is a list of entries ``[type, id, perms]`` (``type`` in user / group / mask / other, ``id`` empty
for the owning user, owning group, mask and other; ``perms`` like ``r-x``). A path has an access ACL
(always with ``user::``, ``group::`` and ``other::``) and, for directories, an optional default ACL
that new children inherit. ``x-ms-permissions`` is the short form: owning user, group class (the mask
when there is one, else the owning group), other, a sticky bit (``t``/``T`` in the last place) and a
``+`` when the access ACL has more than the three base entries.
"""

from __future__ import annotations

import re

from .errors import StorageError, error

_TYPES = ("user", "group", "mask", "other")
_PERM = re.compile(r"^[r-][w-][x-]$")
_SYMBOLIC = re.compile(r"^([r-][w-][x-]){2}[r-][w-][xtT-]\+?$")
_OCTAL = re.compile(r"^[01]?[0-7]{3}$")

Entry = list  # [type, id, perms]


def _bad_acl(message: str) -> StorageError:
    return error(400, "InvalidAccessControlList", f"The access control list value is invalid: {message}.")


def octal_to_perms(value: int) -> str:
    return ("r" if value & 4 else "-") + ("w" if value & 2 else "-") + ("x" if value & 1 else "-")


def perms_to_octal(perms: str) -> int:
    return (4 if perms[0] == "r" else 0) | (2 if perms[1] == "w" else 0) | (1 if perms[2] in "xt" else 0)


def and_perms(a: str, b: str) -> str:
    return octal_to_perms(perms_to_octal(a) & perms_to_octal(b))


def parse_permissions(value: str) -> tuple[str, bool]:
    """``x-ms-permissions`` (symbolic ``rwxr-x---`` with optional sticky ``t``/``T``, or octal ``0750``
    / ``1750``) -> nine-character ``rwxr-x---`` and the sticky bit."""
    value = value.strip()
    if _OCTAL.match(value):
        digits = value[-3:]
        sticky = len(value) == 4 and value[0] == "1"
        return "".join(octal_to_perms(int(d)) for d in digits), sticky
    if _SYMBOLIC.match(value):
        value = value.rstrip("+")
        sticky = value[8] in "tT"
        last = {"t": "x", "T": "-"}.get(value[8], value[8])
        return value[:8] + last, sticky
    raise error(400, "InvalidPermission", f"The permission value {value!r} is invalid.")


def parse_umask(value: str | None) -> str:
    if value is None:
        return "----w-rwx"  # 0027
    value = value.strip()
    if not re.match(r"^[0-7]{4}$", value) and not re.match(r"^[0-7]{3}$", value):
        raise error(400, "InvalidUmask", f"The umask {value!r} is invalid.")
    return "".join(octal_to_perms(int(d)) for d in value[-3:])


def parse_acl(text: str, *, with_perms: bool = True) -> tuple[list[Entry], list[Entry]]:
    """``user::rwx,user:ID:r-x,default:group::r-x,...`` -> (access entries, default entries).

    With ``with_perms=False`` (remove mode) entries have no permissions: ``user:ID``."""
    access: list[Entry] = []
    default: list[Entry] = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        parts = raw.split(":")
        is_default = parts[0] == "default"
        if is_default:
            parts = parts[1:]
        if with_perms:
            if len(parts) != 3:
                raise _bad_acl(f"entry {raw!r}")
            kind, ident, perms = parts
            if not _PERM.match(perms):
                raise _bad_acl(f"permissions in {raw!r}")
        else:
            if len(parts) not in (1, 2):
                raise _bad_acl(f"entry {raw!r}")
            kind, ident, perms = parts[0], (parts[1] if len(parts) == 2 else ""), ""
        if kind not in _TYPES or (kind in ("mask", "other") and ident):
            raise _bad_acl(f"entry {raw!r}")
        target = default if is_default else access
        if any(e[0] == kind and e[1] == ident for e in target):
            raise _bad_acl(f"duplicate entry {raw!r}")
        target.append([kind, ident, perms])
    return access, default


def _sorted(entries: list[Entry]) -> list[Entry]:
    order = {("user", True): 0, ("user", False): 1, ("group", True): 2, ("group", False): 3,
             ("mask", True): 4, ("other", True): 5}
    return sorted(entries, key=lambda e: (order[(e[0], e[1] == "")], e[1]))


def with_mask(entries: list[Entry]) -> list[Entry]:
    """Add the mask POSIX requires once there are named entries (the union of the group class)."""
    entries = [list(e) for e in entries]
    named = [e for e in entries if e[1] or e[0] == "mask"]
    if named and not any(e[0] == "mask" for e in entries):
        bits = 0
        for e in entries:
            if e[0] == "group" or (e[0] == "user" and e[1]):
                bits |= perms_to_octal(e[2])
        entries.append(["mask", "", octal_to_perms(bits)])
    return _sorted(entries)


def check_access(entries: list[Entry]) -> list[Entry]:
    for kind in ("user", "group", "other"):
        if not any(e[0] == kind and e[1] == "" for e in entries):
            raise _bad_acl(f"the access ACL needs a {kind}:: entry")
    return with_mask(entries)


def check_default(entries: list[Entry]) -> list[Entry]:
    if not entries:
        return []
    for kind in ("user", "group", "other"):
        if not any(e[0] == kind and e[1] == "" for e in entries):
            raise _bad_acl(f"the default ACL needs a default:{kind}:: entry")
    return with_mask(entries)


def base(perms9: str) -> list[Entry]:
    return [["user", "", perms9[0:3]], ["group", "", perms9[3:6]], ["other", "", perms9[6:9]]]


def _get(entries: list[Entry], kind: str, ident: str = "") -> Entry | None:
    return next((e for e in entries if e[0] == kind and e[1] == ident), None)


def permissions_string(access: list[Entry], sticky: bool) -> str:
    user = _get(access, "user")[2]
    group = (_get(access, "mask") or _get(access, "group"))[2]
    other = _get(access, "other")[2]
    if sticky:
        other = other[:2] + ("t" if other[2] == "x" else "T")
    extended = any(e[1] or e[0] == "mask" for e in access)
    return user + group + other + ("+" if extended else "")


def set_permissions(access: list[Entry], perms9: str) -> list[Entry]:
    """Apply a nine-character permission string: user::, the mask (or group:: without one), other::."""
    access = [list(e) for e in access]
    _get(access, "user")[2] = perms9[0:3]
    (_get(access, "mask") or _get(access, "group"))[2] = perms9[3:6]
    _get(access, "other")[2] = perms9[6:9]
    return access


def format_acl(access: list[Entry], default: list[Entry]) -> str:
    parts = [f"{k}:{i}:{p}" for k, i, p in _sorted(access)]
    parts += [f"default:{k}:{i}:{p}" for k, i, p in _sorted(default)]
    return ",".join(parts)


def modify(entries: list[Entry], changes: list[Entry]) -> list[Entry]:
    out = [list(e) for e in entries]
    for kind, ident, perms in changes:
        current = _get(out, kind, ident)
        if current is None:
            out.append([kind, ident, perms])
        else:
            current[2] = perms
    return out


def remove(entries: list[Entry], removals: list[Entry], *, access: bool) -> list[Entry]:
    out = [list(e) for e in entries]
    for kind, ident, _ in removals:
        if access and not ident and kind in ("user", "group", "other"):
            raise _bad_acl(f"the base entry {kind}:: cannot be removed")
        out = [e for e in out if not (e[0] == kind and e[1] == ident)]
    return out


def inherit(parent_default: list[Entry], mode9: str, umask9: str, is_dir: bool
            ) -> tuple[list[Entry], list[Entry]]:
    """Access and default ACL of a new child (REST Path - Create, POSIX semantics).

    Without a default ACL on the parent the umask restricts the mode; with one, the child's access ACL
    is the parent's default ACL limited by the mode, and a directory also inherits it as its default."""
    if not parent_default:
        perms = "".join(and_perms(mode9[i:i + 3], octal_to_perms(7 - perms_to_octal(umask9[i:i + 3])))
                        for i in (0, 3, 6))
        return base(perms), []
    access = [list(e) for e in parent_default]
    _get(access, "user")[2] = and_perms(_get(access, "user")[2], mode9[0:3])
    group_class = _get(access, "mask") or _get(access, "group")
    group_class[2] = and_perms(group_class[2], mode9[3:6])
    _get(access, "other")[2] = and_perms(_get(access, "other")[2], mode9[6:9])
    return _sorted(access), ([list(e) for e in parent_default] if is_dir else [])


def allowed(access: list[Entry], owner: str, group: str, caller: str, caller_groups: set[str], want: str) -> bool:
    """POSIX access check of ``want`` (``r``, ``w`` or ``x``) for ``caller`` (an object ID)."""
    bit = {"r": 4, "w": 2, "x": 1}[want]
    mask = _get(access, "mask")
    mask_bits = perms_to_octal(mask[2]) if mask else 7
    if caller == owner:
        return bool(perms_to_octal(_get(access, "user")[2]) & bit)
    named = _get(access, "user", caller)
    if named is not None:
        return bool(perms_to_octal(named[2]) & mask_bits & bit)
    groups = [e for e in access if e[0] == "group" and ((e[1] == "" and group in caller_groups)
                                                       or (e[1] and e[1] in caller_groups))]
    if groups:
        return any(perms_to_octal(e[2]) & mask_bits & bit for e in groups)
    return bool(perms_to_octal(_get(access, "other")[2]) & bit)

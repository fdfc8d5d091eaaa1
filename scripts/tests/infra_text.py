"""Reading deployment files as text, for the offline checks (no Bicep compiler; PyYAML only for the
metrics collector's configuration, in check_infra.py).

mask_bicep() blanks comments and string literals so brackets and keys can be matched safely;
BicepFile answers what a file declares (params, vars, outputs, module and resource blocks) and
what it uses; parse_simple_yaml() reads the mapping-only YAML azure.yaml uses; dockerfile_stages()
splits a Dockerfile into stages with their base image, ENV, USER, EXPOSE and ENTRYPOINT.
"""

from __future__ import annotations

import re
from pathlib import Path


def mask_bicep(text: str) -> str:
    """Same length as `text`, with comments and the literal parts of strings blanked out.

    String interpolations (`'${expr}'`) stay, since they are code. Newlines are kept, so line
    numbers and offsets match the original.
    """
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    def skip_string(i: int) -> int:  # i is just past the opening quote; returns past the closing one
        while i < n:
            c = text[i]
            if c == "\\":
                blank(i, i + 2)
                i += 2
            elif c == "'":
                return i + 1
            elif text.startswith("${", i):
                i = skip_code(i + 2, closing="}")
            else:
                blank(i, i + 1)
                i += 1
        return i

    def skip_code(i: int, closing: str | None) -> int:
        depth = 0
        while i < n:
            if text.startswith("//", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
                blank(i, end)
                i = end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
                blank(i, end)
                i = end
            elif text.startswith("'''", i):
                end = text.find("'''", i + 3)
                end = n if end < 0 else end + 3
                blank(i + 3, end - 3)
                i = end
            elif text[i] == "'":
                i = skip_string(i + 1)
            elif closing and text[i] == "{":
                depth += 1
                i += 1
            elif closing and text[i] == closing and depth == 0:
                return i + 1
            else:
                if closing and text[i] == "}":
                    depth -= 1
                i += 1
        return i

    skip_code(0, None)
    return "".join(out)


def _mask_comments_only(text: str) -> str:
    out = list(text)
    i, n = 0, len(text)
    in_string = False
    interp_depth: list[int] = []  # brace depth per open interpolation
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == "'":
                in_string = False
            elif text.startswith("${", i):
                interp_depth.append(0)
                in_string = False
                i += 2
                continue
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            for k in range(i, end):
                out[k] = " "
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k in range(i, end):
                if out[k] != "\n":
                    out[k] = " "
            i = end
            continue
        if c == "'":
            in_string = True
        elif c == "{" and interp_depth:
            interp_depth[-1] += 1
        elif c == "}" and interp_depth:
            if interp_depth[-1] == 0:
                interp_depth.pop()
                in_string = True
            else:
                interp_depth[-1] -= 1
        i += 1
    return "".join(out)


def matching_close(masked: str, open_index: int) -> int:
    """Index of the bracket closing the one at open_index, in masked text."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[masked[open_index]]]
    for k in range(open_index + 1, len(masked)):
        c = masked[k]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                raise ValueError(f"unbalanced '{c}' at offset {k}")
            if not stack:
                return k
    raise ValueError(f"unclosed '{masked[open_index]}' at offset {open_index}")


def top_level_keys(masked: str, open_index: int) -> list[str]:
    """Property names directly inside the object literal opening at open_index."""
    close = matching_close(masked, open_index)
    key_re = re.compile(r"[ \t]*([A-Za-z_]\w*)[ \t]*:")
    keys, depth, k, at_item_start = [], 0, open_index + 1, True
    while k < close:
        if depth == 0 and at_item_start:
            m = key_re.match(masked, k)
            if m:
                keys.append(m.group(1))
                k, at_item_start = m.end(), False
                continue
        c = masked[k]
        if c in "{[(":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "\n" or c == ",":
            at_item_start = depth == 0
        elif not c.isspace():
            at_item_start = False
        k += 1
    return keys


class BicepFile:
    PARAM_RE = re.compile(r"^[ \t]*param[ \t]+(\w+)[ \t]+(\w+)([ \t]*=)?", re.M)

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self.text = text if text is not None else path.read_text()
        self.masked = mask_bicep(self.text)
        self.code = _mask_comments_only(self.text)  # comments blanked, strings kept
        self.params: dict[str, dict] = {}
        for m in self.PARAM_RE.finditer(self.masked):
            decorators = self._decorators_before(m.start())
            self.params[m.group(1)] = {
                "type": m.group(2),
                "has_default": bool(m.group(3)),
                "decorators": decorators,
                "line_start": m.start(),
                "line_end": self.masked.find("\n", m.start()),
            }
        self.outputs = {m.group(1): m for m in re.finditer(r"^[ \t]*output[ \t]+(\w+)[ \t]+\w+[ \t]*=", self.masked, re.M)}

    def _decorators_before(self, offset: int) -> str:
        """The one-line @decorators stacked directly above the declaration at offset."""
        collected = []
        for line in reversed(self.code[:offset].split("\n")[:-1]):
            if not line.strip().startswith("@"):
                break
            collected.append(line.strip())
        return "\n".join(reversed(collected))

    def unused_params(self) -> list[str]:
        return self._unused(self.params, self.PARAM_RE)

    def unused_vars(self) -> list[str]:
        var_re = re.compile(r"^[ \t]*var[ \t]+(\w+)[ \t]*=", re.M)
        return self._unused([m.group(1) for m in var_re.finditer(self.masked)], var_re)

    def _unused(self, names, declaration_re: re.Pattern) -> list[str]:
        code = self.masked
        # Decorators and the declarations themselves are not uses.
        without_decls = declaration_re.sub("", code)
        without_decls = re.sub(r"^[ \t]*@.*$", "", without_decls, flags=re.M)
        unused = []
        for name in names:
            uses = []
            for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\b", without_decls):
                before = without_decls[:m.start()].rsplit("\n", 1)[-1]
                is_key = re.match(r"[ \t]*:(?!:)", without_decls[m.end():]) and not (
                    re.search(r"\?[^:]*$", before) or re.search(r"\bin[ \t]*$", before))
                if not is_key:
                    uses.append(m)
            if not uses:
                unused.append(name)
        return unused

    def blocks(self, keyword: str) -> dict[str, tuple[str, int, int]]:
        """`module X 'path' = ...` or `resource X 'type' = ...`: name -> (path/type, body open, body close)."""
        found = {}
        for m in re.finditer(rf"^[ \t]*{keyword}[ \t]+(\w+)[ \t]+'", self.masked, re.M):
            quote = m.end() - 1
            end_quote = self.text.index("'", quote + 1)
            target = self.text[quote + 1:end_quote]
            eq = self.masked.index("=", end_quote)
            open_index = re.compile(r"[\[{]").search(self.masked, eq).start()
            close = matching_close(self.masked, open_index)
            found[m.group(1)] = (target, open_index, close)
        return found

    DECLARATION_RE = re.compile(r"^(?:var|param|resource|module|output|func|type|targetScope)\b", re.M)

    def var_array(self, name: str) -> tuple[int, int] | None:
        """Offsets of the expression of `var name = ...`, up to the next declaration."""
        m = re.search(rf"^var[ \t]+{name}[ \t]*=", self.masked, re.M)
        if not m:
            return None
        following = self.DECLARATION_RE.search(self.masked, m.end())
        return (m.end(), following.start() if following else len(self.masked))

    def env_names_in(self, start: int, end: int) -> list[str]:
        return re.findall(r"\bname:[ \t]*'([A-Z][A-Z0-9_]*)'", self.code[start:end])


# --------------------------------------------------------------------------- azure.yaml

def parse_simple_yaml(text: str) -> dict:
    """Mappings and scalars only (all azure.yaml uses); anything else is an error."""
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        m = re.fullmatch(r"([A-Za-z0-9_.-]+):(?:\s+(.*))?", line.strip())
        if not m:
            raise ValueError(f"azure.yaml line {number}: unsupported YAML for this checker: {raw.strip()}")
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        key, value = m.group(1), m.group(2)
        if value is None:
            parent[key] = {}
            stack.append((indent, parent[key]))
        else:
            parent[key] = value.strip().strip("'\"")
    return root


# --------------------------------------------------------------------------- Dockerfile

def dockerfile_stages(text: str) -> dict[str, dict]:
    """Stages in file order (the last one is what a build without --target produces), each with
    its base image (global ARG defaults substituted), ENV, USER, EXPOSE and ENTRYPOINT."""
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, dict] = {}
    args: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        instr, _, rest = s.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and current is None:
            name, _, default = rest.strip().partition("=")
            args[name.strip()] = default.strip().strip("'\"")
        elif instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda a: args.get(a.group(1) or a.group(2), a.group(0)), m.group(1))
            name = (m.group(2) or f"stage{len(stages)}").lower()
            current = {"from": image, "env": {}, "user": None, "lines": [], "expose": [], "entrypoint": None}
            stages[name] = current
        elif current is not None:
            current["lines"].append(s)
            if instr == "ENV":
                for k, v in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
                    current["env"][k] = v
            elif instr == "USER":
                current["user"] = rest.strip()
            elif instr == "EXPOSE":
                current["expose"] += rest.split()
            elif instr == "ENTRYPOINT":
                current["entrypoint"] = rest.strip()
    return stages

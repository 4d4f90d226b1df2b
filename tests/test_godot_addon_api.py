"""Every Godot API the addon's GDScript uses exists in Godot 4 (no Godot binary needed).

gdparse/gdlint check syntax and style only: a misspelled method or a Godot 3 name passes them
and fails only when a game loads the script. This checker parses each .gd file with gdtoolkit's
parser, infers the static type of expressions where the code states it (typed declarations,
`Type.new()`, `as` casts, return types from the class reference, preloaded scripts, autoloads,
`class_name`s) and checks every class, method, property, signal and constant reached through a
known type, every bare call and every identifier, against Godot's class reference XML
(`shared/godot_api/classes/`, walking `inherits`). It also rejects a short list of names that
exist in that reference but are newer than Godot 4.3, the addon's minimum version.

Expressions whose type the code does not state (untyped `Variant`s, `Dictionary` keys read with
a dot) are not checked: the GDScript rule "every var typed" (test_gdscript_lint.py) keeps them
rare.
"""

from __future__ import annotations

import configparser
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from gdtoolkit.parser import parser as gd_parser
from lark import Token, Tree

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "godot_addon"
CLASSES_DIR = REPO.parent / "shared" / "godot_api" / "classes"

# Names the class reference (Godot 4.7 docs) has but Godot 4.3 does not: using one would break
# the addon on its minimum version. (class, name) or (class, None) for a whole class.
NEWER_THAN_4_3: dict[tuple[str, str | None], str] = {
    ("StreamPeerSocket", None): "StreamPeerSocket appeared after 4.3 (4.3 StreamPeerTCP has "
                                "poll/get_status itself)",
    **{("AudioStreamGenerator", n): "mix_rate_mode is Godot 4.4+ (godotengine/godot#102691)"
       for n in ("mix_rate_mode", "set_mix_rate_mode", "get_mix_rate_mode", "MIX_RATE_OUTPUT",
                 "MIX_RATE_INPUT", "MIX_RATE_CUSTOM", "MIX_RATE_MAX")},
    **{("PackedByteArray", n): "bswap16/32/64 are Godot 4.5+ (godotengine/godot#105145)"
       for n in ("bswap16", "bswap32", "bswap64")},
    **{(c, n): "volume_linear is Godot 4.4+ (godotengine/godot#99268)"
       for c in ("AudioStreamPlayer", "AudioStreamPlayer2D", "AudioStreamPlayer3D")
       for n in ("volume_linear", "set_volume_linear", "get_volume_linear")},
}

# Godot 4.0+ API missing from the shared class reference data, which lost some entries (it seems
# those with search keywords); each is in the Godot 4.x class docs (4.0 and later).
MISSING_FROM_REFERENCE: dict[tuple[str, str], str] = {
    ("SceneTree", "get_nodes_in_group"): "Array[Node]",
    ("Control", "custom_minimum_size"): "Vector2",
    ("Control", "size_flags_horizontal"): "int",
    ("Control", "size_flags_vertical"): "int",
}

GDSCRIPT_KEYWORD_VALUES = {"true", "false", "null", "self", "super"}
BUILTIN_TYPE_NAMES = {"void", "Variant"}


# ------------------------------------------------------------------------------ class reference


@dataclass
class Method:
    name: str
    required: int
    returns: str


@dataclass
class EngineClass:
    name: str
    inherits: str | None
    methods: dict[str, Method] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)
    signals: dict[str, int] = field(default_factory=dict)
    constants: dict[str, str | None] = field(default_factory=dict)
    enums: set[str] = field(default_factory=set)


class GodotApi:
    """Godot's class reference: classes, the global scope, global enums."""

    def __init__(self, classes_dir: Path) -> None:
        self.classes: dict[str, EngineClass] = {}
        for path in sorted(classes_dir.glob("*.xml")):
            cls = self._load(path)
            self.classes[cls.name] = cls
        self.global_scope = self.classes.pop("@GlobalScope")
        self.gdscript = self.classes.pop("@GDScript")
        self.singletons = dict(self.global_scope.members)
        self.global_functions = {**self.global_scope.methods, **self.gdscript.methods}
        self.global_constants = {**self.global_scope.constants, **self.gdscript.constants}
        self.global_enums = self.global_scope.enums

    @staticmethod
    def _load(path: Path) -> EngineClass:
        root = ET.parse(path).getroot()
        cls = EngineClass(root.get("name", path.stem), root.get("inherits") or None)
        for method in root.iter("method"):
            params = method.findall("param")
            required = sum(1 for p in params if p.get("default") is None and not p.get("vararg"))
            ret = method.find("return")
            cls.methods[method.get("name")] = Method(
                method.get("name"), required, ret.get("type") if ret is not None else "void")
        for member in root.iter("member"):
            cls.members[member.get("name")] = member.get("type", "Variant")
        for signal in root.iter("signal"):
            cls.signals[signal.get("name")] = len(signal.findall("param"))
        for constant in root.iter("constant"):
            cls.constants[constant.get("name")] = constant.get("enum")
            if constant.get("enum"):
                cls.enums.add(constant.get("enum"))
        return cls

    def chain(self, name: str) -> list[EngineClass]:
        """The class and its ancestors, nearest first."""
        result = []
        while name and name in self.classes:
            result.append(self.classes[name])
            name = self.classes[name].inherits
        return result

    def is_enum(self, type_name: str) -> bool:
        if type_name in self.global_enums:
            return True
        if "." in type_name:
            owner, enum = type_name.split(".", 1)
            return any(enum in c.enums for c in self.chain(owner))
        return False


# ------------------------------------------------------------------------------ project scripts


@dataclass(eq=False)
class Func:
    name: str
    required: int
    returns: str | None
    static: bool


@dataclass(eq=False)
class Script:
    """One GDScript class: a file, or an inner `class` of one."""

    path: Path
    name: str
    tree: Tree | None = None
    outer: Script | None = None
    extends_name: str | None = None  # engine class, class_name or inner class
    extends_path: str | None = None  # "res://..." or relative path
    funcs: dict[str, Func] = field(default_factory=dict)
    vars: dict[str, str | None] = field(default_factory=dict)
    consts: dict[str, str | None] = field(default_factory=dict)  # type hint, if stated
    const_scripts: dict[str, Path] = field(default_factory=dict)  # const X := preload(...)
    signals: dict[str, int] = field(default_factory=dict)
    enums: dict[str, set[str]] = field(default_factory=dict)
    inner: dict[str, Script] = field(default_factory=dict)


@dataclass(frozen=True)
class T:
    """A static type: `obj` engine/builtin instance, `cls` engine class object, `sobj`/`scls`
    script instance/script object, `enum` an enum object, `signal` a signal of known arity."""

    kind: str
    name: str = ""
    script: Script | None = None
    arity: int = -1
    element: T | None = None  # of a typed Array


def _tokens(node: Tree) -> list[Token]:
    return [c for c in node.children if isinstance(c, Token)]


def _line(node: Tree | Token) -> int:
    if isinstance(node, Token):
        return node.line or 0
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line
    for child in node.children:
        line = _line(child)
        if line:
            return line
    return 0


def _string_value(node: Tree | Token) -> str | None:
    """The text of a string literal node, else None."""
    if isinstance(node, Tree) and node.data in ("string", "expr") and node.children:
        return _string_value(node.children[0])
    if isinstance(node, Token) and node.type in ("REGULAR_STRING", "LONG_STRING"):
        return node.value.strip("\"'")
    return None


class Project:
    """Every .gd file of a Godot project, with class_names and autoloads resolved."""

    def __init__(self, root: Path, sources: dict[Path, str] | None = None) -> None:
        self.root = root
        self.scripts: dict[Path, Script] = {}
        self.problems: list[str] = []
        if sources is None:
            sources = {p: p.read_text("utf-8") for p in sorted(root.rglob("*.gd"))
                       if ".godot" not in p.parts}
        for path, text in sources.items():
            tree = gd_parser.parse(text, gather_metadata=True)
            self.scripts[path.resolve()] = self._collect(path.resolve(), tree, None)
        self.class_names = {s.name: s for s in self.scripts.values() if s.name}
        self.autoloads: dict[str, Script] = {}
        project_file = root / "project.godot"
        if project_file.exists():
            self._read_autoloads(project_file)

    # -- collection

    def _collect(self, path: Path, tree: Tree, outer: Script | None, name: str = "") -> Script:
        script = Script(path, name, tree, outer)
        for stmt in tree.children:
            if not isinstance(stmt, Tree):
                continue
            kind = stmt.data
            if kind in ("classname_stmt", "classname_extends_stmt"):
                script.name = _tokens(stmt)[0].value if kind == "classname_stmt" else \
                    [t for t in _tokens(stmt) if t.type == "NAME"][0].value
            if kind in ("extends_stmt", "classname_extends_stmt"):
                self._collect_extends(script, stmt)
            elif kind in ("class_var_stmt", "static_class_var_stmt"):
                decl = stmt.children[0]
                toks = _tokens(decl)
                hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
                script.vars[toks[0].value] = hint
            elif kind == "const_stmt":
                decl = stmt.children[0]
                toks = _tokens(decl)
                const_name = toks[0].value
                hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
                script.consts[const_name] = hint
                preload = self._preload_target(decl.children[-1], path)
                if preload is not None:
                    script.const_scripts[const_name] = preload
            elif kind == "signal_stmt":
                args = [c for c in stmt.children if isinstance(c, Tree)]
                script.signals[_tokens(stmt)[0].value] = len(args[0].children) if args else 0
            elif kind == "enum_stmt":
                enum = stmt.children[0]
                body = [c for c in enum.children if isinstance(c, Tree)][0]
                values = {_tokens(e)[0].value for e in body.children
                          if isinstance(e, Tree) and e.data == "enum_element"}
                if enum.data == "enum_named":
                    script.enums[_tokens(enum)[0].value] = values
                else:
                    for value in values:
                        script.consts[value] = "int"
            elif kind in ("func_def", "static_func_def"):
                func = stmt if kind == "func_def" else stmt.children[0]
                script.funcs[self._func_name(func)] = self._func_info(func, kind != "func_def")
            elif kind == "class_def":
                inner_name = _tokens(stmt)[0].value
                script.inner[inner_name] = self._collect(path, stmt, script, inner_name)
        return script

    @staticmethod
    def _func_name(func: Tree) -> str:
        return _tokens(func.children[0])[0].value

    @staticmethod
    def _func_info(func: Tree, static: bool) -> Func:
        header = func.children[0]
        toks = _tokens(header)
        args = [c for c in header.children if isinstance(c, Tree) and c.data == "func_args"][0]
        required = 0
        for arg in args.children:
            if not isinstance(arg, Tree):
                continue
            has_default = arg.data == "func_arg_inf" or any(
                isinstance(c, Tree) for c in arg.children)
            required += 0 if has_default else 1
        hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
        return Func(toks[0].value, required, hint, static)

    def _collect_extends(self, script: Script, stmt: Tree) -> None:
        parts = []
        for child in stmt.children:
            value = _string_value(child)
            if value is not None:
                script.extends_path = value
            elif isinstance(child, Token) and child.type == "NAME" and child.value != "extends":
                parts.append(child.value)
        if stmt.data == "classname_extends_stmt":
            parts = parts[1:]
        if parts:
            script.extends_name = ".".join(parts)

    def _preload_target(self, expr: Tree | Token, path: Path) -> Path | None:
        """For `preload("x.gd")`, the path it loads (resolved later into a Script)."""
        node = expr
        while isinstance(node, Tree) and node.data == "expr" and len(node.children) == 1:
            node = node.children[0]
        if not (isinstance(node, Tree) and node.data == "standalone_call"):
            return None
        toks = _tokens(node)
        if not toks or toks[0].value != "preload" or len(node.children) < 2:
            return None
        target = _string_value(node.children[1])
        return self.resolve_path(target, path) if target else None

    def resolve_path(self, target: str, from_file: Path) -> Path:
        if target.startswith("res://"):
            return (self.root / target[len("res://"):]).resolve()
        return (from_file.parent / target).resolve()

    def _read_autoloads(self, project_file: Path) -> None:
        config = configparser.ConfigParser(strict=False, interpolation=None)
        config.optionxform = str  # type: ignore[assignment,method-assign]
        text = project_file.read_text("utf-8")
        config.read_string("[root]\n" + text)
        if not config.has_section("autoload"):
            return
        for name, value in config.items("autoload"):
            target = self.resolve_path(value.strip('"').lstrip("*"), project_file)
            if target not in self.scripts:
                self.problems.append(f"project.godot: autoload {name} -> missing {target}")
                continue
            self.autoloads[name] = self.scripts[target]

    # -- script relations

    def preloaded(self, script: Script, const: str) -> Script | None:
        target = script.const_scripts.get(const)
        return self.scripts.get(target) if target is not None else None

    def base_of(self, script: Script) -> tuple[Script | None, str | None]:
        """(script parent, engine class) the script extends; one of them is None."""
        if script.extends_path is not None:
            return self.scripts.get(self.resolve_path(script.extends_path, script.path)), None
        name = script.extends_name
        if name is None:
            return None, "RefCounted"  # GDScript's default base
        found = self.find_script_type(name, script)
        if found is not None:
            return found, None
        return None, name

    def find_script_type(self, name: str, script: Script) -> Script | None:
        """A script class named `name` as seen from `script` (inner, preload const, class_name)."""
        head, _, rest = name.partition(".")
        found: Script | None = None
        scope: Script | None = script
        while scope is not None and found is None:
            if head in scope.inner:
                found = scope.inner[head]
            elif head in scope.const_scripts:
                found = self.preloaded(scope, head)
            scope = scope.outer
        if found is None:
            found = self.class_names.get(head)
        for part in rest.split(".") if rest and found is not None else []:
            found = found.inner.get(part) if found is not None else None
        return found


# ------------------------------------------------------------------------------ the checker


class Checker:
    """Walks each script's functions, inferring types and reporting unknown API."""

    def __init__(self, api: GodotApi, project: Project) -> None:
        self.api = api
        self.project = project
        self.problems: list[str] = list(project.problems)
        self._script: Script | None = None
        self._scopes: list[dict[str, T | None]] = []

    def run(self) -> list[str]:
        for script in self.project.scripts.values():
            self._check_script(script)
        return self.problems

    # -- reporting

    def _report(self, node: Tree | Token, message: str) -> None:
        assert self._script is not None
        try:
            where = self._script.path.relative_to(self.project.root)
        except ValueError:
            where = self._script.path
        self.problems.append(f"{where}:{_line(node)}: {message}")

    def _newer(self, node: Tree | Token, cls: str, name: str | None) -> bool:
        owners = [c.name for c in self.api.chain(cls)] if name else [cls]
        for owner in owners:
            reason = NEWER_THAN_4_3.get((owner, name))
            if reason:
                self._report(node, f"{owner}{'.' + name if name else ''}: {reason}")
                return True
        return False

    # -- types

    def resolve_type(self, hint: str, node: Tree | Token, context: Script | None = None
                     ) -> T | None:
        """The type named by a TYPE_HINT as seen from `context` (default: the script being
        checked); reports names Godot 4 does not have."""
        context = context or self._script
        assert context is not None
        hint = hint.replace(" ", "")
        match = re.fullmatch(r"(\w+(?:\.\w+)*)(?:\[(.*)\])?", hint)
        if match is None:
            self._report(node, f"cannot read type {hint!r}")
            return None
        base, params = match.group(1), match.group(2)
        if params is not None:
            if base == "Dictionary":
                self._report(node, "typed Dictionary[K, V] is Godot 4.4+")
            elements = [self.resolve_type(p, node, context) for p in params.split(",")]
            if base == "Array":
                return T("obj", "Array", element=elements[0])
        script = self.project.find_script_type(base, context)
        if script is not None:
            return T("sobj", script=script)
        if base in self._enum_names(context) or self.api.is_enum(base):
            return T("obj", "int")
        if base in BUILTIN_TYPE_NAMES:
            return None
        if base in self.api.classes:
            self._newer(node, base, None)
            return T("obj", base)
        self._report(node, f"unknown type {base!r}")
        return None

    def _enum_names(self, script: Script) -> set[str]:
        names: set[str] = set()
        scope: Script | None = script
        while scope is not None:
            names |= set(scope.enums)
            scope = scope.outer
        return names

    def _type_of_reference(self, type_name: str) -> T | None:
        """A type named in the class reference (return and member types)."""
        if type_name.startswith("Array["):
            return T("obj", "Array")
        if type_name in ("Variant", "void") or type_name not in self.api.classes:
            return T("obj", "int") if self.api.is_enum(type_name) or "." in type_name else None
        return T("obj", type_name)

    # -- lookups

    def _engine_attr(self, node: Tree | Token, cls: str, name: str, call: bool, nargs: int,
                     static: bool) -> tuple[bool, T | None]:
        chain = self.api.chain(cls)
        for engine in chain:
            if (engine.name, name) in MISSING_FROM_REFERENCE:
                return True, self._type_of_reference(MISSING_FROM_REFERENCE[engine.name, name])
            if not call and name in engine.signals:  # before members: the data lists theme
                return True, T("signal", arity=engine.signals[name])  # items as members
        for engine in chain:
            if name in engine.methods:
                self._newer(node, engine.name, name)
                method = engine.methods[name]
                if call and nargs < method.required:
                    self._report(node, f"{engine.name}.{name}() needs {method.required} "
                                       f"arguments, got {nargs}")
                return True, self._type_of_reference(method.returns) if call else T(
                    "obj", "Callable")
            if call:
                continue
            if name in engine.members:
                self._newer(node, engine.name, name)
                return True, self._type_of_reference(engine.members[name])
            if name in engine.constants:
                self._newer(node, engine.name, name)
                return True, T("obj", "int")
            if name in engine.enums:
                return True, T("enum", f"{engine.name}.{name}")
        if call and static and name == "new":
            return True, T("obj", cls)
        return False, None

    def _script_attr(self, node: Tree | Token, script: Script, name: str, call: bool,
                     nargs: int, static: bool) -> tuple[bool, T | None]:
        scope: Script | None = script
        while scope is not None:
            if name in scope.funcs:
                func = scope.funcs[name]
                if call and nargs < func.required:
                    self._report(node, f"{name}() needs {func.required} arguments, got {nargs}")
                if call and static and not func.static:
                    self._report(node, f"{name}() is not static")
                if not call:
                    return True, T("obj", "Callable")
                return True, self.resolve_type(func.returns, node, scope) if func.returns else None
            if call:
                if static and name == "new":
                    return True, T("sobj", script=script)
            elif name in scope.vars:
                hint = scope.vars[name]
                return True, self.resolve_type(hint, node, scope) if hint else None
            elif name in scope.const_scripts:
                return True, T("scls", script=self.project.preloaded(scope, name))
            elif name in scope.consts:
                hint = scope.consts[name]
                return True, self.resolve_type(hint, node, scope) if hint else None
            elif name in scope.signals:
                return True, T("signal", arity=scope.signals[name])
            elif name in scope.enums:
                return True, T("enum", name, script=scope)
            elif name in scope.inner:
                return True, T("scls", script=scope.inner[name])
            parent, engine = self.project.base_of(scope)
            if engine is not None:
                return self._engine_attr(node, engine, name, call, nargs, static)
            scope = parent
        if call and static and name == "new":
            return True, T("sobj", script=script)
        return False, None

    def attribute(self, node: Tree | Token, owner: T | None, name: str, call: bool,
                  nargs: int) -> T | None:
        """The type of `owner.name` (or of the call `owner.name(...)`), reporting unknowns."""
        if owner is None:
            return None
        found, result = False, None
        if owner.kind == "obj":
            if owner.name == "Dictionary" and not call:
                return None  # dict.key reads a key
            found, result = self._engine_attr(node, owner.name, name, call, nargs, False)
        elif owner.kind == "cls":
            found, result = self._engine_attr(node, owner.name, name, call, nargs, True)
        elif owner.kind in ("sobj", "scls") and owner.script is not None:
            found, result = self._script_attr(node, owner.script, name, call, nargs,
                                              owner.kind == "scls")
        elif owner.kind == "signal":
            found, result = self._engine_attr(node, "Signal", name, call, nargs, False)
            # `sig.emit` without a call is a Callable (connected elsewhere): no arity to check.
            if found and call and name == "emit" and owner.arity >= 0 and nargs != owner.arity:
                self._report(node, f"signal emitted with {nargs} arguments, declared with "
                                   f"{owner.arity}")
        elif owner.kind == "enum":
            values = owner.script.enums.get(owner.name, set()) if owner.script else None
            if values is None:
                cls, _, enum = owner.name.partition(".")
                values = {c for e in self.api.chain(cls) for c, en in e.constants.items()
                          if en == enum}
            found, result = name in values, T("obj", "int")
        if not found:
            what = owner.name or (owner.script.name if owner.script else "") or (
                owner.script.path.name if owner.script else "?")
            self._report(node, f"{what} has no {'method' if call else 'member'} {name!r}")
        return result

    def name_type(self, token: Token, call: bool, nargs: int) -> T | None:
        """The type of a bare identifier (or of the bare call `name(...)`)."""
        name = token.value
        if not call:
            for scope in reversed(self._scopes):
                if name in scope:
                    return scope[name]
            if name in GDSCRIPT_KEYWORD_VALUES:
                if name == "self":
                    return T("sobj", script=self._script)
                if name == "super":
                    assert self._script is not None
                    parent, engine = self.project.base_of(self._script)
                    return T("sobj", script=parent) if parent else T("obj", engine or "")
                return None
        assert self._script is not None
        found, result = self._script_attr(token, self._script, name, call, nargs, False)
        if found:
            return result
        if call:
            if name in self.api.global_functions:
                method = self.api.global_functions[name]
                if nargs < method.required:
                    self._report(token, f"{name}() needs {method.required} arguments")
                return self._type_of_reference(method.returns)
            if name in self.api.classes:  # constructor: int(x), PackedByteArray(), Vector2(a, b)
                self._newer(token, name, None)
                return T("obj", name)
            self._report(token, f"unknown function {name}()")
            return None
        if name in self.project.autoloads:
            return T("sobj", script=self.project.autoloads[name])
        if name in self.project.class_names:
            return T("scls", script=self.project.class_names[name])
        if name in self.api.singletons:
            return T("obj", self.api.singletons[name])
        if name in self.api.classes:
            self._newer(token, name, None)
            return T("cls", name)
        if name in self.api.global_constants:
            return T("obj", "int")
        if name in self.api.global_enums:
            return T("enum", name)
        self._report(token, f"unknown identifier {name!r}")
        return None

    # -- walking

    def _check_script(self, script: Script) -> None:
        previous = self._script
        self._script = script
        assert script.tree is not None
        if script.extends_name is not None:
            parent, engine = self.project.base_of(script)
            if parent is None and engine is not None:
                if engine not in self.api.classes:
                    self._report(script.tree, f"extends unknown class {engine!r}")
                else:
                    self._newer(script.tree, engine, None)
        if script.extends_path is not None and self.project.base_of(script)[0] is None:
            self._report(script.tree, f"extends missing script {script.extends_path!r}")
        for stmt in script.tree.children:
            if isinstance(stmt, Tree):
                self._class_stmt(script, stmt)
        self._script = previous

    def _class_stmt(self, script: Script, stmt: Tree) -> None:
        kind = stmt.data
        if kind == "class_def":
            self._check_script(script.inner[_tokens(stmt)[0].value])
        elif kind in ("func_def", "static_func_def"):
            self._function(stmt if kind == "func_def" else stmt.children[0])
        elif kind in ("class_var_stmt", "static_class_var_stmt", "const_stmt"):
            self._scopes = [{}]
            self._declaration(stmt.children[0], class_level=True)
        elif kind == "signal_stmt":
            for arg in stmt.children:
                if isinstance(arg, Tree):
                    for typed in arg.children:
                        if isinstance(typed, Tree) and typed.data == "signal_arg_typed":
                            self.resolve_type(_tokens(typed)[1].value, typed)
        elif kind == "property_body_def":
            self._scopes = [{}]
            for child in stmt.children:
                if isinstance(child, Tree):
                    self._scopes.append({t.value: None for t in _tokens(child)[1:2]})
                    self._block(child.children)
        self._check_preloads(stmt)

    def _check_preloads(self, node: Tree) -> None:
        for call in node.iter_subtrees():
            if call.data != "standalone_call":
                continue
            toks = _tokens(call)
            if toks and toks[0].value in ("preload", "load") and len(call.children) > 1:
                target = _string_value(call.children[1])
                assert self._script is not None
                path = self.project.resolve_path(target, self._script.path) if target else None
                if path is not None and path not in self.project.scripts and not path.exists():
                    self._report(call, f"{toks[0].value}() of a missing file {target!r}")

    def _args(self, node: Tree) -> dict[str, T | None]:
        scope: dict[str, T | None] = {}
        for arg in node.children:
            if not isinstance(arg, Tree):
                continue
            if arg.data == "func_arg_variadic":
                arg = arg.children[0]
            toks = _tokens(arg)
            hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
            default = [c for c in arg.children if isinstance(c, Tree)]
            inferred = self.expr(default[0]) if default else None
            scope[toks[0].value] = self.resolve_type(hint, arg) if hint else (
                inferred if arg.data == "func_arg_inf" else None)
        return scope

    def _function(self, func: Tree) -> None:
        header = func.children[0]
        self._scopes = [{}]
        for child in header.children:
            if isinstance(child, Tree) and child.data == "func_args":
                self._scopes.append(self._args(child))
        for tok in _tokens(header):
            if tok.type == "TYPE_HINT":
                self.resolve_type(tok.value, tok)
        self._block(func.children[1:])

    def _block(self, statements: list) -> None:
        for stmt in statements:
            if isinstance(stmt, Tree):
                self._statement(stmt)

    def _statement(self, stmt: Tree) -> None:
        kind = stmt.data
        if kind in ("func_var_stmt", "const_stmt"):
            self._declaration(stmt.children[0], class_level=False)
        elif kind in ("for_stmt", "for_stmt_typed"):
            toks = _tokens(stmt)
            trees = [c for c in stmt.children if isinstance(c, Tree)]
            self.expr(trees[0])
            hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
            self._scopes.append({toks[0].value: self.resolve_type(hint, stmt) if hint else None})
            self._block(trees[1:])
            self._scopes.pop()
        elif kind in ("if_stmt", "while_stmt", "if_branch", "elif_branch", "else_branch"):
            for child in stmt.children:
                if isinstance(child, Tree) and child.data in ("expr",):
                    self.expr(child)
                elif isinstance(child, Tree):
                    self._statement(child)
        elif kind == "match_stmt":
            self.expr(stmt.children[0])
            for branch in stmt.children[1:]:
                if isinstance(branch, Tree):
                    for child in branch.children:
                        if isinstance(child, Tree) and child.data == "pattern":
                            self._pattern(child)
                        elif isinstance(child, Tree) and child.data == "expr":
                            self.expr(child)
                        elif isinstance(child, Tree):
                            self._statement(child)
        elif kind in ("expr_stmt", "return_stmt"):
            for child in stmt.children:
                if isinstance(child, Tree):
                    self.expr(child)
        elif kind in ("pass_stmt", "break_stmt", "continue_stmt", "breakpoint_stmt",
                      "annotation"):
            pass
        else:
            for child in stmt.children:
                if isinstance(child, Tree):
                    self._statement(child) if child.data.endswith("_stmt") else self.expr(child)

    def _pattern(self, pattern: Tree) -> None:
        """`State.OPEN:` and `SOME_CONSTANT:` patterns name things that must exist."""
        for node in pattern.iter_subtrees():
            names = [c for c in node.children if isinstance(c, Token) and c.type == "NAME"]
            if node.data == "attr_pattern":
                owner = self.name_type(names[0], False, 0)
                for tok in names[1:]:
                    owner = self.attribute(tok, owner, tok.value, False, 0)
            elif node.data not in ("var_capture_pattern", "call_pattern"):
                for tok in names:
                    self.name_type(tok, False, 0)

    def _declaration(self, decl: Tree, class_level: bool) -> None:
        toks = _tokens(decl)
        name = toks[0].value
        hint = next((t.value for t in toks if t.type == "TYPE_HINT"), None)
        values = [c for c in decl.children if isinstance(c, Tree) and c.data == "expr"]
        inferred = self.expr(values[0]) if values else None
        declared = self.resolve_type(hint, decl) if hint else None
        if not class_level:
            self._scopes[-1][name] = declared if hint else (
                inferred if decl.data in ("func_var_inf", "const_inf") else None)

    # -- expressions

    def expr(self, node: Tree | Token) -> T | None:
        if isinstance(node, Token):
            return self._token(node)
        kind = node.data
        if kind in ("expr", "par_expr") and len(node.children) == 1:
            return self.expr(node.children[0])
        if kind == "getattr":
            return self._getattr(node, call=False, nargs=0)
        if kind == "getattr_call":
            args = node.children[1:]
            for arg in args:
                self.expr(arg)
            return self._getattr(node.children[0], call=True, nargs=len(args))
        if kind == "standalone_call":
            name, args = node.children[0], node.children[1:]
            for arg in args:
                self.expr(arg)
            if name.value == "preload" and args:
                target = _string_value(args[0])
                assert self._script is not None
                script = self.project.scripts.get(
                    self.project.resolve_path(target, self._script.path)) if target else None
                return T("scls", script=script) if script else None
            return self.name_type(name, call=True, nargs=len(args))
        if kind == "actual_type_cast":
            self.expr(node.children[0])
            hints = [t for t in _tokens(node) if t.type == "TYPE_HINT"]
            return self.resolve_type(hints[-1].value, hints[-1]) if hints else None
        if kind in ("type_test", "asless_type_test"):
            self.expr(node.children[0])
            for tok in _tokens(node):
                if tok.type == "TYPE_HINT":
                    self.resolve_type(tok.value, tok)
            return T("obj", "bool")
        if kind == "subscr_expr":
            owner = self.expr(node.children[0])
            self.expr(node.children[1])
            element = {"PackedByteArray": "int", "PackedVector2Array": "Vector2",
                       "PackedStringArray": "String", "String": "String"}
            if owner is not None and owner.kind == "obj" and owner.name in element:
                return T("obj", element[owner.name])
            return owner.element if owner is not None else None
        if kind == "lambda":
            header = node.children[0]
            outer = self._scopes
            self._scopes = [*outer]
            for child in header.children:
                if isinstance(child, Tree) and child.data == "func_args":
                    self._scopes.append(self._args(child))
            self._block(node.children[1:])
            self._scopes = outer
            return T("obj", "Callable")
        if kind == "string" or kind == "rstring":
            return T("obj", "String")
        if kind == "string_name":
            return T("obj", "StringName")
        if kind == "node_path":
            return T("obj", "NodePath")
        if kind == "array":
            for child in node.children:
                self.expr(child)
            return T("obj", "Array")
        if kind == "dict":
            for child in node.children:
                if isinstance(child, Tree):
                    for part in child.children:
                        if isinstance(part, Tree):
                            self.expr(part)
            return T("obj", "Dictionary")
        if kind == "get_node":
            return T("obj", "Node")
        if kind in ("comparison", "asless_comparison", "content_test", "asless_content_test",
                    "and_test", "or_test", "asless_and_test", "asless_or_test",
                    "asless_actual_not_test"):
            for child in node.children:
                if isinstance(child, Tree) or (isinstance(child, Token) and child.type == "NAME"):
                    self.expr(child)
            return T("obj", "bool")
        if kind == "assnmnt_expr":
            for child in node.children:
                if isinstance(child, Tree) or (isinstance(child, Token) and child.type == "NAME"):
                    self.expr(child)
            return None
        results = [self.expr(child) for child in node.children
                   if isinstance(child, Tree) or (isinstance(child, Token) and
                                                  child.type == "NAME")]
        if kind in ("test_expr", "asless_test_expr") and results:
            return results[0]
        if kind == "await_expr" and results:
            return results[-1]
        return None

    def _token(self, token: Token) -> T | None:
        if token.type == "NAME":
            return self.name_type(token, call=False, nargs=0)
        if token.type == "NUMBER":
            return T("obj", "float" if re.search(r"[.eE]", token.value) else "int")
        if token.type in ("HEX", "BIN"):
            return T("obj", "int")
        return None

    def _getattr(self, node: Tree, call: bool, nargs: int) -> T | None:
        children = node.children
        owner = self.expr(children[0])
        names = [c for c in children[1:] if isinstance(c, Token) and c.type != "DOT"]
        for i, tok in enumerate(names):
            last = i == len(names) - 1
            owner = self.attribute(tok, owner, tok.value, call and last, nargs if last else 0)
        return owner


# ------------------------------------------------------------------------------ tests


@cache
def godot_api() -> GodotApi:
    if not CLASSES_DIR.is_dir():
        pytest.skip(f"Godot class reference not found at {CLASSES_DIR} "
                    "(clone the repository with shared/ beside it)")
    return GodotApi(CLASSES_DIR)


def check_sources(sources: dict[str, str]) -> list[str]:
    """Problems in a set of snippets (file name -> text), checked as one small project."""
    root = PROJECT / "__snippets__"
    project = Project(root, {root / name: text for name, text in sources.items()})
    return Checker(godot_api(), project).run()


def test_the_addon_uses_only_godot_4_3_api() -> None:
    project = Project(PROJECT)
    assert len(project.scripts) >= 10, sorted(project.scripts)
    assert "NpcVoice" in project.autoloads
    problems = Checker(godot_api(), project).run()
    assert not problems, "\n".join(problems)


def test_plugin_cfg_and_scenes_reference_existing_files() -> None:
    config = configparser.ConfigParser(interpolation=None)
    plugin_dir = PROJECT / "addons" / "npc_voice"
    config.read(plugin_dir / "plugin.cfg")
    assert (plugin_dir / config["plugin"]["script"].strip('"')).is_file()
    for scene in PROJECT.rglob("*.tscn"):
        for target in re.findall(r'path="res://([^"]+)"', scene.read_text("utf-8")):
            assert (PROJECT / target).is_file(), f"{scene.name} references missing {target}"
    main_scene = re.search(r'run/main_scene="res://([^"]+)"',
                           (PROJECT / "project.godot").read_text("utf-8"))
    assert main_scene and (PROJECT / main_scene.group(1)).is_file()


GODOT_3_SNIPPET = """\
extends Node

var _tcp: StreamPeerTCP = StreamPeerTCP.new()
var _playback: AudioStreamGeneratorPlayback = null


func _process(_delta: float) -> void:
	if _tcp.is_connected_to_host():
		pass
	var buffered: int = _playback.get_frames_buffered()
	var data: PoolByteArray = PoolByteArray()
	yield(get_tree(), "idle_frame")
	OS.get_ticks_msec()
	var spatial := Spatial.new()
"""


def test_checker_reports_godot_3_and_missing_api() -> None:
    problems = "\n".join(check_sources({"old.gd": GODOT_3_SNIPPET}))
    for expected in ("is_connected_to_host", "get_frames_buffered", "'PoolByteArray'",
                     "yield()", "get_ticks_msec", "'Spatial'"):
        assert expected in problems, f"{expected} not reported:\n{problems}"


def test_checker_reports_api_newer_than_4_3() -> None:
    snippet = """\
extends AudioStreamPlayer3D

var _peer: StreamPeerSocket = null
var _map: Dictionary[String, int] = {}


func _ready() -> void:
	var generator := AudioStreamGenerator.new()
	generator.mix_rate_mode = AudioStreamGenerator.MIX_RATE_OUTPUT
	volume_linear = 0.5
	PackedByteArray().bswap16(0, 1)
"""
    problems = "\n".join(check_sources({"new.gd": snippet}))
    for expected in ("StreamPeerSocket", "Dictionary[K, V]", "mix_rate_mode", "MIX_RATE_OUTPUT",
                     "volume_linear", "bswap16"):
        assert expected in problems, f"{expected} not reported:\n{problems}"


def test_checker_follows_preloads_inner_classes_and_signals() -> None:
    codec = """\
extends RefCounted

const SIZE: int = 64


static func decode(data: PackedByteArray) -> Frame:
	return Frame.new()


class Frame:
	extends RefCounted
	var body: PackedByteArray = PackedByteArray()
"""
    user = """\
extends Node

signal got(size: int)

const Codec := preload("codec.gd")


func _ready() -> void:
	var frame: Codec.Frame = Codec.decode(PackedByteArray())
	frame.body.append(Codec.SIZE)
	frame.bogus()
	Codec.missing()
	got.emit(1, 2)
	frame.body.append_arary(PackedByteArray())
	var other := preload("nowhere.gd")
	match frame.body.size():
		Codec.SIZE, Codec.NOPE:
			pass
"""
    problems = check_sources({"codec.gd": codec, "user.gd": user})
    text = "\n".join(problems)
    assert "'bogus'" in text and "'missing'" in text and "append_arary" in text, text
    assert "emitted with 2 arguments" in text and "nowhere.gd" in text, text
    assert "no member 'NOPE'" in text and len(problems) == 6, text

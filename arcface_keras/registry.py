"""Name → constructor registries: the user-facing vocabulary of backbones, heads, augmentations,
optimizers and learning-rate schedules.

Each registry knows the modules that register the shipped components and imports them on the
first look-up, so `HEADS.names()` lists every head as soon as the package is imported, whatever
the caller imported before (as mmengine's lazy registries do). A user's own component registers
itself with `@HEADS.register("name")` when its module is imported.

A spec's keywords are checked against the constructor's annotations, which carry their ranges
(`m: Annotated[float, Interval(ge=0, lt=math.pi / 2)] = 0.5`, see typecheck.py): a keyword without
an annotation takes anything. A keyword the engine fills in (a registry's `supplied`, such as a
backbone's `embedding_size`) is refused in a spec, naming the setting it comes from. What one
annotation cannot say, an entry's `check` hook does (`register(name, check=...)`): its keywords
together, a nested spec, or a keyword against the experiment's settings.
"""
import difflib
import importlib
import inspect
import typing

from arcface_keras.typecheck import mismatch


class Registry:
    """Maps names to classes or functions; `build` makes one from a name or a spec dict.

    >>> BACKBONES = Registry("backbone")
    >>> @BACKBONES.register("tiny")
    ... class Tiny: ...
    >>> BACKBONES.build({"type": "tiny"})
    """

    def __init__(self, kind, modules=(), supplied=None):
        self.kind = kind
        self.modules = tuple(modules)  # imported on first look-up: they register the shipped entries
        self.supplied = dict(supplied or {})  # keyword the engine fills in -> where its value comes from
        self._entries = {}
        self._checks = {}

    def register(self, name, check=None):
        """Decorator registering a class or function under `name`.

        `check(keywords, experiment)`, if given, checks what the keywords' annotations cannot: it gets
        every keyword (defaults filled in, each already within its annotation) and the experiment (None
        when a spec is checked alone, e.g. by `build`), and raises ValueError("got k=v ...: expected ...").
        """

        def decorate(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._entries[name]!r}")
            self._entries[name] = obj
            if check is not None:
                self._checks[name] = check
            return obj

        return decorate

    def _load(self):
        for module in self.modules:
            importlib.import_module(module)
        self.modules = ()

    def names(self):
        self._load()
        return sorted(self._entries)

    def get(self, name):
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}{closest_hint(name, self.names())} "
                           f"registered: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name):
        self._load()
        return name in self._entries

    def check(self, spec, experiment=None):
        """Validate a spec without building it: its name; each keyword against the constructor's
        annotation of it (type and range, see typecheck.py), none the engine fills in; then the
        entry's `check` hook, with `experiment`'s settings when given. Returns (constructor, kwargs)."""
        name, kwargs = split_spec(spec, self.kind)
        obj = self.get(name)
        parameters = keyword_parameters(obj)
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            settable = [keyword for keyword in parameters if keyword not in self.supplied]
            raise TypeError(f"{self.kind} {name!r} got unknown keyword {unknown[0]!r}"
                            f"{closest_hint(unknown[0], settable)} accepted: {', '.join(settable)}")
        for keyword, value in kwargs.items():
            if keyword in self.supplied:
                raise ValueError(f"{self.kind} {name!r} got {keyword}={value!r}: expected no {keyword}, "
                                 f"the engine sets it from {self.supplied[keyword]}")
            wrong = mismatch(value, annotation_of(parameters[keyword]))
            if wrong:
                hint = closest_hint(value, wrong.choices).rstrip(";") if wrong.choices else ""
                raise (TypeError if wrong.got and not wrong.choices else ValueError)(
                    f"{self.kind} {name!r} got {keyword}={value!r}: {wrong}{hint}")
        if name in self._checks:
            defaults = {k: p.default for k, p in parameters.items() if p.default is not p.empty}
            try:
                self._checks[name]({**defaults, **kwargs}, experiment)
            except ValueError as exc:
                raise ValueError(f"{self.kind} {name!r} {exc.args[0]}") from None
        return obj, kwargs

    def build(self, spec, **extra):
        """Build from `"name"` or `{"type": "name", **kwargs}`; `extra` keywords are added to the spec's."""
        obj, kwargs = self.check(spec)
        return obj(**{**kwargs, **extra})


def closest(name, valid):
    """The one of `valid` closest to `name` (compared as text), or None: every "did you mean" uses it."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return close[0] if close else None


def closest_hint(name, valid):
    """'; did you mean X?' for the closest of `valid`, else ';'."""
    close = closest(name, valid)
    return f"; did you mean {close!r}?" if close else ";"


def split_spec(spec, kind="component"):
    """`"name"` or `{"type": name, **kw}` → (name, kw)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "type" in spec:
        kwargs = dict(spec)
        return kwargs.pop("type"), kwargs
    raise TypeError(f"a {kind} spec is a name or a dict with a 'type' key, got {spec!r}")


def accepted_keywords(obj):
    """Named keywords a constructor takes, with those its `**kwargs` forwards to a base class of ours."""
    return list(keyword_parameters(obj))


def keyword_annotations(obj):
    """{keyword: annotation} of a constructor (typing.Any where it has none), base classes' included."""
    return {name: annotation_of(p) for name, p in keyword_parameters(obj).items()}


def annotation_of(parameter):
    return typing.Any if parameter.annotation is parameter.empty else parameter.annotation


def keyword_parameters(obj):
    """{keyword: inspect.Parameter} of a constructor, base classes' included.

    A class whose `__init__` takes `**kwargs` accepts its base classes' keywords too, up to the
    first class from outside this project (Keras' own layer keywords do not count).
    """
    if not inspect.isclass(obj):
        return _named_parameters(obj)[0]
    accepted = {}
    for cls in obj.__mro__:
        if "__init__" not in vars(cls):
            continue
        if not cls.__module__.startswith("arcface_keras") and cls is not obj:
            break
        named, forwards = _named_parameters(cls.__init__)
        accepted.update({name: p for name, p in named.items() if name not in accepted})
        if not forwards:
            break
    return accepted


def _named_parameters(function):
    params = inspect.signature(function).parameters.values()
    named = {p.name: p for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind == p.VAR_KEYWORD for p in params)


BACKBONES = Registry("backbone", ["arcface_keras.backbones.resnet", "arcface_keras.backbones.mobilefacenet"],
                     supplied={"input_shape": "data.image_size (set that instead)",
                               "embedding_size": "model.embedding_size (set that instead)"})
HEADS = Registry("head", ["arcface_keras.heads.margin", "arcface_keras.heads.metric"],
                 supplied={"num_classes": "the training data's number of identities"})
AUGMENTATIONS = Registry("augmentation", ["arcface_keras.augment"])
OPTIMIZERS = Registry("optimizer", ["arcface_keras.training.optimizers"])
LR_SCHEDULES = Registry("lr_schedule", ["arcface_keras.training.schedules"])

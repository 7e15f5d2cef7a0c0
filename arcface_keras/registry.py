"""Name → constructor registries: the user-facing vocabulary of backbones, heads and augmentations."""
import difflib
import inspect


class Registry:
    """Maps names to classes or functions; `build` makes one from a name or a spec dict.

    >>> BACKBONES = Registry("backbone")
    >>> @BACKBONES.register("tiny")
    ... class Tiny: ...
    >>> BACKBONES.build({"type": "tiny"})
    """

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name):
        """Decorator registering a class or function under `name`."""

        def decorate(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._entries[name]!r}")
            self._entries[name] = obj
            return obj

        return decorate

    def names(self):
        return sorted(self._entries)

    def get(self, name):
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} registered: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name):
        return name in self._entries

    def check(self, spec):
        """Validate a spec (name and keywords) without building it; returns (constructor, kwargs)."""
        name, kwargs = split_spec(spec, self.kind)
        obj = self.get(name)
        accepted = accepted_keywords(obj)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"{self.kind} {name!r} got unknown keyword {unknown[0]!r}; accepted: {', '.join(accepted)}")
        return obj, kwargs

    def build(self, spec, **extra):
        """Build from `"name"` or `{"type": "name", **kwargs}`; `extra` keywords are added to the spec's."""
        obj, kwargs = self.check(spec)
        return obj(**{**kwargs, **extra})


def split_spec(spec, kind="component"):
    """`"name"` or `{"type": name, **kw}` → (name, kw)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "type" in spec:
        kwargs = dict(spec)
        return kwargs.pop("type"), kwargs
    raise TypeError(f"a {kind} spec is a name or a dict with a 'type' key, got {spec!r}")


def accepted_keywords(obj):
    """Named keywords a constructor takes (a `**kwargs` it forwards to Keras does not count)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


BACKBONES = Registry("backbone")
HEADS = Registry("head")
AUGMENTATIONS = Registry("augmentation")

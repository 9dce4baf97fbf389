"""Reads a run folder's config.yaml (the resolved configuration mmdflow writes), with PyYAML when
it is installed and a minimal reader of mmdflow's own layout otherwise. Needs no PyTorch."""


def scalar(text):
    """A YAML scalar as the minimal reader sees it: ~/null, true/false, int, float, or a string."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    if t in ("", "~", "null"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if t == "{}":
        return {}
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_yaml(text):
    """`key: value` lines nested by indentation (as mmdflow writes them), without PyYAML."""
    root = {}
    stack = [(-1, root)]  # (indent, dict) of the open sections
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not body.strip() or body.strip() == "---":
            continue
        indent = len(body) - len(body.lstrip())
        key, sep, value = body.strip().partition(":")
        if not sep:
            raise ValueError(f"line {n} is not `key: value`")
        while indent <= stack[-1][0]:
            stack.pop()
        section = stack[-1][1]
        if value.strip():
            section[key.strip()] = scalar(value)
        else:
            section[key.strip()] = {}
            stack.append((indent, section[key.strip()]))
    return root


def load_yaml(text):
    """The mapping a YAML text holds (ValueError, or PyYAML's error, when it is not YAML)."""
    try:
        import yaml
    except ImportError:
        return parse_yaml(text)
    return yaml.safe_load(text)


def setting(config, dotted, default=None):
    """config["a"]["b"] for "a.b", or default."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flatten(config, prefix=""):
    """{"a.b": value} for every leaf of a nested mapping."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

"""Dataset validation (placeholder)."""


def run_validate(data) -> int:
    raise NotImplementedError

"""The paper venue speaks the domain model natively: nothing to map."""

__all__: list[str] = []

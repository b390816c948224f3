"""Shapes the other files use."""


class Circle:
    """A circle of some radius."""

    def __init__(self, radius: float) -> None:
        self.radius = radius

    def area(self) -> float:
        return 3.14159 * self.radius ** 2

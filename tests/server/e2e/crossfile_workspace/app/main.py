from app.shapes import Circle


def report(radius: float) -> str:
    circle = Circle(radius)

    return "done"

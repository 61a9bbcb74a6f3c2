import pytest

from layerforge.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200MB", 200_000_000),
        ("9GB", 9_000_000_000),
        ("512MiB", 512 * 1024**2),
        (1024, 1024),
        ("1.5 GB", 1_500_000_000),
        ("10", 10),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "12 parsecs", "-1MB", ""])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(814_000_000) == "814 MB"
    assert format_size(1_234_000_000) == "1.23 GB"

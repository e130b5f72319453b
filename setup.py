"""Packaging for plausible-wsgi. Tool configuration lives in pyproject.toml."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="plausible-wsgi",
    version="0.1.0",
    description="Server-side Plausible Analytics for Python WSGI applications",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # An SPDX expression (PEP 639) and the file it refers to.
    license="MIT",
    license_files=["LICENSE"],
    author="The plausible-wsgi maintainers",
    # No public repository address is known yet: a guessed one would be a broken link.
    project_urls={"Plausible Events API": "https://plausible.io/docs/events-api"},
    python_requires=">=3.9",
    packages=find_packages(include=["plausible_wsgi", "plausible_wsgi.*"]),
    package_data={"plausible_wsgi": ["py.typed"], "plausible_wsgi.receiver": ["static/*"]},
    # Only package_data above: the static folder is data, not a package.
    include_package_data=False,
    exclude_package_data={"": ["__pycache__/*"]},
    install_requires=[
        "werkzeug>=2.2",
        "requests>=2.28",
        "pybreaker>=1.0,<2",  # tests/test_breaker.py pins the behaviours relied on
        "retrying>=1.4",
    ],
    extras_require={
        "flask": ["flask>=2.3"],
        # Exact Unicode grapheme clusters (regex's \X) for the 120-character name and
        # 2000-character referrer limits Plausible counts that way; without it a close
        # approximation from unicodedata is used.
        "unicode": ["regex>=2022.1.18"],
        "django": ["django>=4.2"],
        # plausible_wsgi.asgi itself needs nothing: the ASGI server to run it with.
        "asgi": ["uvicorn>=0.30"],
        # stats() as Prometheus metrics (plausible_wsgi.prometheus).
        "prometheus": ["prometheus-client>=0.17"],
        # Peers and tools for `python -m bench` (plus Debian's nginx and wrk).
        "bench": [
            "posthog>=7",
            "segment-analytics-python>=2.3",
            "matplotlib>=3.7",
            "flask>=2.3",
            "gunicorn>=21.2",
        ],
        "dev": [
            "pytest>=8.4",  # --disable-plugin-autoload (pyproject addopts)
            "pytest-timeout>=2.1",
            "pytest-xdist>=3.5",
            "hypothesis>=6.80",
            "mypy>=1.8",
            "ruff>=0.5",
            "types-requests",
            "flask>=2.3",
            "django>=4.2",
            "gunicorn>=21.2",
            "waitress>=2.1",
            "websocket-client>=1.6",
            # ASGI: tests/test_asgi*.py and bench/asgi.py
            "starlette>=0.40",
            "fastapi>=0.110",
            "uvicorn>=0.30",
            "hypercorn>=0.17",
            "quart>=0.19",
            "prometheus-client>=0.17",
            "regex>=2022.1.18",
            "trustme>=1.1",  # a CA made at test time for the TLS transport tests
            # Real-server tests: uWSGI stops under load (built from source: needs gcc and
            # the Python headers, which .ci/run installs) and gunicorn's gevent workers.
            "uwsgi>=2.0.22",
            "gevent>=23.9",
        ],
    },
    entry_points={
        "console_scripts": ["plausible-wsgi = plausible_wsgi.cli:main"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Framework :: Flask",
        "Framework :: Django",
        "Framework :: FastAPI",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Middleware",
        "Typing :: Typed",
    ],
)

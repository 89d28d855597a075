"""Load problems from JSONL (``.jsonl``, ``.jsonl.gz``), Parquet, or a saved Hugging Face dataset directory.

Every row becomes a :class:`~prorl.data.schema.Problem` through an adapter (our own schema, or a
source format from :mod:`prorl.data.adapters`, named or detected from the file's first rows), is
checked by :func:`~prorl.data.adapters.validate_problem`, and gets ``source = "<path>:<position>"``.
A well-formed row that cannot be used (an adapter's :class:`~prorl.data.adapters.SkippedRow`: no
derivable answer, an unrouted ``ability``) is left out and counted by reason in a :class:`LoadReport`;
:func:`load_problems` prints the report's one-line summary when it skipped rows.

Positions: JSONL rows are numbered by their 1-based line (blank lines are skipped but counted);
Parquet rows and dataset-directory rows by their 0-based row index (the ``i`` of ``dataset[i]``).
A bad row becomes a :class:`~prorl.errors.DataError` whose message reads
``<path>:<position>: field '<name>': <what was expected>, got <what was there>``.

Dataset directories are read with pyarrow alone (no ``datasets`` package at run time): a folder
written by ``Dataset.save_to_disk`` (``state.json`` listing ``.arrow`` files in Arrow's streaming
format), or a ``DatasetDict`` folder (``dataset_dict.json`` plus one folder per split). A DatasetDict
with one split loads that split; with several, name the split folder (``path/train``) — loading every
split together would silently mix training and test data.

Columnar files cannot hold "absent": a struct column gives every row every key, None where a row had
none. None values are therefore dropped at the top level, one level down in ``metadata`` and
``tests``, and in each ``metadata.kwargs`` dict (instruction arguments); deeper Nones are kept (a
Reasoning Gym entry may rely on them). pyarrow cannot write an empty struct to Parquet, so write
instruction kwargs such as ``[{}]`` as a JSON string column (``metadata`` may be one) or use JSONL.

Plain Python (pyarrow is imported only for columnar files): this module never imports torch.

>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> rows = [{"id": "a", "domain": "math", "prompt": "1+1=", "answer": "2"},
...         {"id": "b", "domain": "maths", "prompt": "2+2=", "answer": "4"}]
>>> _ = (d / "t.jsonl").write_text("\\n".join(json.dumps(r) for r in rows))
>>> [p if isinstance(p, DataError) else p.source for p in iter_problems(d / "t.jsonl")]  # doctest: +ELLIPSIS
['.../t.jsonl:1', DataError(".../t.jsonl:2: field 'domain': expected one of math, code, stem, logic, instruction, got 'maths'")]
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from prorl.data.adapters import ADAPTERS, DETECT_ROWS, FieldError, SkippedRow, detect_adapter_rows, validate_problem
from prorl.data.schema import Problem, known_domains
from prorl.errors import ConfigError, DataError

FORMATS = ".jsonl, .jsonl.gz, .parquet, or a directory saved by datasets' save_to_disk (or hf:NAME[:SPLIT])"

HUB_PREFIX = "hf:"
"""A data path ``hf:NAME[:SPLIT]`` (or ``hf:NAME:CONFIG:SPLIT``) is read with ``datasets.load_dataset``: a hub
dataset where there is network (or in the local cache), or a local folder of data files."""
"""What :func:`load_problems` reads, for error messages."""


def _format(path: Path) -> str:
    """'jsonl', 'parquet', 'arrow-dir' or 'hub' for ``path``, or DataError."""
    if str(path).startswith(HUB_PREFIX):
        return "hub"
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        return "arrow-dir"
    name = path.name.lower()
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(f"{path}: unknown file format, expected {FORMATS}")


def _stem(path: Path) -> str:
    """File name without its data extensions: ``train.jsonl.gz`` -> ``train``; ``hf:org/name:test`` -> ``name-test``."""
    if str(path).startswith(HUB_PREFIX):
        return str(path)[len(HUB_PREFIX):].rstrip("/").split("/")[-1].replace(":", "-")
    name = path.name
    for ext in (".jsonl.gz", ".jsonl", ".parquet"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _drop_nones(row: dict) -> dict:
    """Columnar rows: drop None values at the top level and in ``metadata`` / ``tests`` (see module doc)."""
    out = {}
    for key, value in row.items():
        if value is None:
            continue
        if key in ("metadata", "tests") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if key == "metadata" and isinstance(value.get("kwargs"), list):
                # Instruction arguments: a list column of structs fills every argument name in.
                value["kwargs"] = [{k: v for k, v in kw.items() if v is not None} if isinstance(kw, dict) else kw
                                   for kw in value["kwargs"]]
        out[key] = value
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(1-based line, decoded row, None) or (line, None, error) for every non-blank line."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield line_no, None, f"not valid UTF-8 (byte {exc.start})"
                continue
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield line_no, None, f"invalid JSON ({exc.msg} at column {exc.colno})"


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield index, _drop_nones(row), None
            index += 1


def _arrow_files(path: Path) -> list[Path]:
    """The ``.arrow`` files of a saved dataset directory, in order (see module doc for the layout)."""
    dict_file = path / "dataset_dict.json"
    if dict_file.exists():
        try:
            splits = json.loads(dict_file.read_text())["splits"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{dict_file}: expected a JSON object with a 'splits' list") from None
        if len(splits) != 1:
            raise DataError(f"{path}: a dataset with splits {', '.join(map(str, splits))}: "
                            f"name one split's folder, e.g. {path / str(splits[0])}")
        return _arrow_files(path / str(splits[0]))
    state_file = path / "state.json"
    if state_file.exists():
        try:
            names = [entry["filename"] for entry in json.loads(state_file.read_text())["_data_files"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{state_file}: expected a JSON object with a '_data_files' list of {{'filename': ...}}") from None
        files = [path / name for name in names]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataError(f"{state_file}: lists missing data files: {', '.join(missing)}")
        return files
    raise DataError(f"{path}: a directory without state.json or dataset_dict.json; expected {FORMATS}")


def _arrow_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow as pa

    index = 0
    for file in _arrow_files(path):
        with pa.memory_map(str(file)) as source:
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                # Older writers used Arrow's random-access file format; read that too.
                source.seek(0)
                try:
                    reader = pa.ipc.open_file(source)
                except pa.ArrowInvalid as exc:
                    raise DataError(f"{file}: not an Arrow IPC file ({exc})") from None
            batches = reader if isinstance(reader, pa.ipc.RecordBatchStreamReader) else (
                reader.get_batch(i) for i in range(reader.num_record_batches))
            for batch in batches:
                for row in batch.to_pylist():
                    yield index, _drop_nones(row), None
                    index += 1


def parse_hub(spec: str) -> tuple[str, str | None, str | None]:
    """``hf:NAME[:SPLIT]`` or ``hf:NAME:CONFIG:SPLIT`` -> ``(name, config, split)``.

    >>> parse_hub("hf:org/data:train"), parse_hub("hf:org/data"), parse_hub("hf:org/data:main:test")
    (('org/data', None, 'train'), ('org/data', None, None), ('org/data', 'main', 'test'))
    """
    parts = spec[len(HUB_PREFIX):].split(":")
    if not parts[0] or len(parts) > 3 or not all(parts):
        raise DataError(f"{spec}: expected hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), (parts[-1] if len(parts) > 1 else None)
    return name, config, split


def _hub_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    spec = str(path)
    name, config, split = parse_hub(spec)
    try:
        import datasets
    except ImportError:
        raise DataError(f"{spec}: reading datasets by name needs the datasets package: pip install datasets") from None
    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001 - no network, no such dataset or split, a broken script: one message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{spec}: could not load it with datasets.load_dataset ({type(exc).__name__}: {first[:300]}); "
                        f"without network only datasets already in the local cache load: download it where there "
                        f"is network, or save it as a .jsonl/.parquet file") from None
    if isinstance(data, datasets.DatasetDict):
        if len(data) != 1:
            raise DataError(f"{spec}: the dataset has splits {', '.join(data)}; name one, e.g. {spec}:{next(iter(data))}")
        data = next(iter(data.values()))
    for index, row in enumerate(data):
        yield index, _drop_nones(row), None


def read_rows(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Raw rows of a file: ``(position, row, None)``, or ``(position, None, error)`` for unreadable lines.

    Positions follow the module doc (1-based lines for JSONL, 0-based row indices otherwise). A missing
    file, an unknown format or a damaged columnar file raises DataError at once.
    """
    path = Path(path)
    kind = _format(path)
    return {"jsonl": _jsonl_rows, "parquet": _parquet_rows, "arrow-dir": _arrow_rows, "hub": _hub_rows}[kind](path)


@dataclasses.dataclass
class LoadReport:
    """What loading one file did; filled in by :func:`iter_problems` / :func:`load_problems` (``report=``).

    >>> r = LoadReport("train.parquet", "scp", loaded=812, skipped=Counter({"no derivable answer": 30,
    ...                "ability 'chat' not routed": 7}))
    >>> r.num_skipped, r.summary()
    (37, "train.parquet: 812 rows loaded, 37 skipped (no derivable answer: 30, ability 'chat' not routed: 7)")
    """

    path: str = ""
    adapter: str | None = None
    """The adapter used: the one named, or the one detected from the first rows."""
    loaded: int = 0
    """Problems yielded."""
    bad: int = 0
    """Rows yielded as DataError (malformed, unreadable, duplicate id)."""
    skipped: Counter = dataclasses.field(default_factory=Counter)
    """Rows left out, per reason (``SkippedRow.reason``), e.g. ``{"no derivable answer": 30}``."""
    first_skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    """Per reason, the first skipped row: ``"<path>:<position>: skipped (<reason>): <detail>"``."""

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: ``<path>: N rows loaded[, B bad], M skipped (<reason>: count, ...)``; most frequent
        reason first, ties in alphabetical order."""
        line = f"{self.path}: {self.loaded} rows loaded"
        if self.bad:
            line += f", {self.bad} bad"
        if self.skipped:
            ranked = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
            reasons = ", ".join(f"{reason}: {n}" for reason, n in ranked)
            line += f", {self.num_skipped} skipped ({reasons})"
        return line


def _with_domain(row: dict, domain: str | None) -> dict:
    """With the file's domain given, our-schema rows (they have ``prompt``) may leave out ``domain``."""
    if domain is not None and "prompt" in row and row.get("domain") is None:
        return {**row, "domain": domain}
    return row


def iter_problems(path: str | Path, *, adapter: str | None = None, domain: str | None = None,
                  report: LoadReport | None = None) -> Iterator[Problem | DataError]:
    """One item per used row of ``path``: the Problem, or the DataError that says what is wrong with it.

    Args:
        path: a ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file or a saved dataset directory.
        adapter: a name from ``ADAPTERS``; None detects it from the first readable rows (up to
            :data:`~prorl.data.adapters.DETECT_ROWS`, see :func:`~prorl.data.adapters.detect_adapter_rows`).
        domain: the file's domain: filled in for our-schema rows that lack ``domain``, and every
            problem must have it (a mismatch is a bad row).
        report: a :class:`LoadReport` to fill in (path, adapter, counts of loaded, bad and skipped
            rows) as the items are yielded; complete once the iterator is exhausted.

    Rows an adapter skips (:class:`~prorl.data.adapters.SkippedRow`) are not yielded, only counted
    in ``report``. File-level problems (no such file, unknown format, undetectable adapter) raise
    DataError instead of being yielded; an unknown adapter or domain name raises ConfigError. Ids
    must be unique in a file.
    """
    path = Path(path)
    if adapter is not None and adapter not in ADAPTERS:
        raise ConfigError(f"unknown adapter {adapter!r}; expected one of {', '.join(ADAPTERS)}")
    if domain is not None and domain not in known_domains():
        raise ConfigError(f"unknown domain {domain!r}; expected one of {', '.join(known_domains())}")
    report = report if report is not None else LoadReport()
    report.path, report.adapter = str(path), adapter
    columnar = _format(path) != "jsonl"
    where = "row" if columnar else "line"
    stem = _stem(path)
    rows = read_rows(path)
    if adapter is None:
        # Read ahead far enough to see DETECT_ROWS readable rows, then replay what was read.
        ahead: list[tuple[int, Any, str | None]] = []
        samples: list[dict] = []
        for item in rows:
            ahead.append(item)
            if item[2] is None and isinstance(item[1], dict):
                samples.append(_with_domain(item[1], domain))
                if len(samples) == DETECT_ROWS:
                    break
        if samples:
            adapter = detect_adapter_rows(samples)
            if adapter is None:
                raise DataError(f"{path}: cannot tell the row format from the first {len(samples)} row(s) "
                                f"(fields of the first: {', '.join(sorted(map(str, samples[0])))}); "
                                f"pass an adapter, one of {', '.join(ADAPTERS)}")
        report.adapter = adapter
        rows = itertools.chain(ahead, rows)
    first_seen: dict[str, int] = {}
    for position, row, error in rows:
        prefix = f"{path}:{position}"
        if error is not None:
            report.bad += 1
            yield DataError(f"{prefix}: {error}")
            continue
        if not isinstance(row, dict):
            report.bad += 1
            yield DataError(f"{prefix}: expected a JSON object, got {type(row).__name__}")
            continue
        if adapter == "prorl":
            row = _with_domain(row, domain)
        try:
            problem = validate_problem(ADAPTERS[adapter](row, default_id=f"{stem}-{position}"))
            if domain is not None and problem.domain != domain:
                raise FieldError("domain", f"expected {domain!r} (the domain this file was loaded as), "
                                           f"got {problem.domain!r}")
        except SkippedRow as skip:
            report.skipped[skip.reason] += 1
            report.first_skipped.setdefault(skip.reason, f"{prefix}: {skip}")
            continue
        except FieldError as exc:
            report.bad += 1
            yield DataError(f"{prefix}: {exc}")
            continue
        if problem.id in first_seen:
            report.bad += 1
            yield DataError(f"{prefix}: field 'id': expected ids unique within the file, "
                            f"got {problem.id!r} again (first at {where} {first_seen[problem.id]})")
            continue
        first_seen[problem.id] = position
        report.loaded += 1
        yield dataclasses.replace(problem, source=prefix)


def load_problems(path: str | Path, *, adapter: str | None = None, domain: str | None = None,
                  report: LoadReport | None = None) -> list[Problem]:
    """All problems of ``path``; the first bad row raises its DataError (``prorl data check`` lists all).

    Arguments are those of :func:`iter_problems`. Skipped rows are left out; without ``report`` the
    summary line (:meth:`LoadReport.summary`) is printed to stderr once when any were skipped, with
    ``report`` it is filled in and printing is the caller's call. A file with no usable rows is an
    error too: a silently empty training set would only fail later, further from the cause.
    """
    own = report is None
    report = LoadReport() if own else report
    problems = []
    for item in iter_problems(path, adapter=adapter, domain=domain, report=report):
        if isinstance(item, DataError):
            raise item
        problems.append(item)
    if not problems:
        raise DataError(f"{path}: no rows" if not report.num_skipped else f"{report.summary()}: no usable rows")
    if own and report.num_skipped:
        print(report.summary(), file=sys.stderr)
    return problems

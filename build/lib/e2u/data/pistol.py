"""`pistol`: PISTOL's contract graph (Qiu et al. 2024, arXiv 2406.16810) cut into forget, retain and independent edges.

Rows have PISTOL's fields `question`, `answer` and `edge` (one contract, 20 questions), read from one of:
* the embedded seeded generator (`pistol_graph.py`, the default): PISTOL sample 1's structure at a smaller
  size, with a `paraphrased_question` per question (PISTOL has none; the paper wrote its own);
* the hub (`hub: true`): `xinchiqiu/PISTOL`, config `pistol_data_1` (400 questions, 20 edges) or `pistol_data_2`
  (1,500, 75);
* a local file (`data.path`, which wins over `hub`): PISTOL's `sample_data_1.json` layout, one JSON array of
  rows, or JSON Lines.

| split          | what                                                                                |
| -------------- | ----------------------------------------------------------------------------------- |
| `forget`       | the questions of `forget_edges` (default: the data's first edge); a seeded sample of  |
|                | `forget_questions` if set, drawn with `forget_sample` (the edge's other questions are |
|                | then neither unlearned nor                                                          |
|                | evaluated; the retain model still lacks the whole edge)                             |
| `retain`       | the other edges linked to a forget edge; a seeded sample of `retain_eval` if set     |
| `independent`  | the edges of the graph's other components, where there are any; capped the same way |
| `retain_train` | every record outside the forget edges: what the retain model learns                 |
| `target_train` | every record: what the target model learns                                          |

The graph is read off the edge names alone: `A_C2` joins the entities `A` and `C2`, and edges sharing an
entity are connected. An edge is *independent* when no chain of shared entities links it to a forget edge:
it lies in another connected component. For the generator these are its isolated edges (`E1_F1`, ...); in
PISTOL's sample 1, forgetting an edge of the A/B graph leaves the six `E1`/`E2`/`E3` contracts independent,
the edges its harness lists as such (`independent_sales_edge`, `indepedent_employment_edge`); sample 2 has
three components (a chain, a ring, a dense graph), and the two without the forget edge are independent.

`subject` (the locate-then-edit key) is the first party named in the question. The generator names it;
for other data the edge's two parties are read off its "... between X and Y ..." questions (names are runs
of capitalised words; the most frequent pair wins) and the subject is whichever of the two occurs first in
the question: "What was the name of the employer in the employment contract with Xqtb Laur, ...?" gets
"Xqtb Laur". Where neither party can be found it is None and editors key on the last prompt token.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from e2u.data.hub import hub_rows
from e2u.data.options import SourceOptions, is_int
from e2u.data.pistol_graph import MAX_EDGES, graph_rows
from e2u.data.schema import QARecord, read_rows, record_from_json, require_strings
from e2u.errors import E2UError

HUB_DATASET = "xinchiqiu/PISTOL"
CONFIGS = MappingProxyType({"pistol_data_1": "sample_data_1.json", "pistol_data_2": "sample_data_2.json"})
GENERATOR_FILES = (Path(__file__).with_name("pistol_graph.py"), Path(__file__))
ROW_FIELDS = ("question", "answer", "edge")
_NAME = r"[A-Z][\w&'-]*(?: [A-Z][\w&'-]*)*"
_BETWEEN = re.compile(rf"\bbetween ({_NAME}) and ({_NAME})")


@dataclass(frozen=True)
class PistolOptions(SourceOptions):
    """The `pistol` source's options and their defaults (the study file's `data:` options, `pistol_splits`'s
    keyword arguments). Values are checked on construction; a bad one is an error naming it."""
    SOURCE = "pistol"

    seed: int = 0  # the generator's draw and the retain sample
    n_edges: int = 5  # generator: contracts of the connected graph (A_B, then leaves of the hubs A and B)
    n_independent: int = 2  # generator: contracts whose two entities take part in no other
    forget_edges: tuple[str, ...] | None = None  # the edges unlearned; None: the data's first edge
    forget_draw: int | None = None  # without forget_edges: a seeded draw of one edge that leaves some to retain
    retain_eval: int | None = None  # retain (and independent) questions evaluated, seeded samples; None: all
    forget_questions: int | None = None  # a seeded sample of the forget edges' questions unlearned; None: all
    forget_sample: int | None = None  # the seed of that sample (None: forget_draw's), so that seeds can share an edge
    hub: bool = False  # read `xinchiqiu/PISTOL` from the hub instead of generating (a data.path wins)
    config: str = "pistol_data_1"  # the hub config

    def __post_init__(self) -> None:
        if not is_int(self.seed):
            raise E2UError(f"seed: expected an integer, got {self.seed!r}")
        for name, least in (("n_edges", 1), ("n_independent", 0)):
            value = getattr(self, name)
            if not is_int(value) or not least <= value <= MAX_EDGES:
                raise E2UError(f"{name}: expected an integer between {least} and {MAX_EDGES}, got {value!r}")
        if self.n_edges + self.n_independent > MAX_EDGES:
            raise E2UError(f"n_edges + n_independent: expected at most {MAX_EDGES} edges in all, "
                           f"got {self.n_edges} + {self.n_independent}")
        edges = self.forget_edges
        if edges is not None:
            if (not isinstance(edges, (list, tuple)) or not edges
                    or not all(isinstance(e, str) and e.strip() for e in edges)):
                raise E2UError(f"forget_edges: expected a non-empty list of edge names such as ['A_C'], got {edges!r}")
            object.__setattr__(self, "forget_edges", tuple(dict.fromkeys(edges)))
        if self.forget_draw is not None and not is_int(self.forget_draw):
            raise E2UError(f"forget_draw: expected an integer (the seed of the forget edge's draw) or null, "
                           f"got {self.forget_draw!r}")
        if self.retain_eval is not None and (not is_int(self.retain_eval) or self.retain_eval < 1):
            raise E2UError(f"retain_eval: expected an integer >= 1, or null for every retain question, "
                           f"got {self.retain_eval!r}")
        if self.forget_questions is not None and (not is_int(self.forget_questions) or self.forget_questions < 1):
            raise E2UError(f"forget_questions: expected an integer >= 1 (questions of the forget edges unlearned), "
                           f"or null for all of them, got {self.forget_questions!r}")
        if self.forget_sample is not None and not is_int(self.forget_sample):
            raise E2UError(f"forget_sample: expected an integer (the seed of the forget questions' sample) or null, "
                           f"got {self.forget_sample!r}")
        if not isinstance(self.hub, bool):
            raise E2UError(f"hub: expected true or false, got {self.hub!r}")
        if self.config not in CONFIGS:
            raise E2UError(f"config: expected one of {list(CONFIGS)}, got {self.config!r}")


def _check_row(where: str, obj) -> None:
    require_strings(obj, ROW_FIELDS, where)
    parts = obj["edge"].split("_")
    if len(parts) != 2 or not all(parts):
        raise E2UError(f"{where}: field 'edge' must name its two entities as X_Y (as PISTOL's 'A_C2'), "
                       f"got {obj['edge']!r}")


def pistol_rows(path: str | Path | None = None,
                options: PistolOptions | Mapping | None = None) -> list[tuple[str, dict]]:
    """(where, row) for every row: of the local file `path` if given, else of the hub if `options.hub`, else
    of the generator. Every row is checked; a fault names `where` (the file and index or line) and the field."""
    opts = PistolOptions.of(options)
    if path:
        rows = read_rows(Path(path).expanduser())
    elif opts.hub:
        hint = f"a local copy of PISTOL's {CONFIGS[opts.config]} (a JSON array of question, answer, edge)"
        rows = hub_rows(HUB_DATASET, opts.config, local_hint=hint)
    else:
        rows = [(f"pistol generator (seed {opts.seed}) row {i}", row)
                for i, row in enumerate(graph_rows(opts.seed, opts.n_edges, opts.n_independent))]
    for where, obj in rows:
        _check_row(where, obj)
    return rows


def pistol_files(path: str | Path | None = None, options: PistolOptions | Mapping | None = None) -> list[Path]:
    """The files whose hashes key caches: the local file, or the generator's code (none for the hub)."""
    if path:
        return [Path(path).expanduser()]
    return [] if PistolOptions.of(options).hub else list(GENERATOR_FILES)


def edges_of(rows: Iterable) -> dict[str, list[dict]]:
    """`{edge: its rows}` in order of first appearance; `rows` are (where, row) pairs or rows."""
    by_edge: dict[str, list[dict]] = {}
    for row in rows:
        obj = row[1] if isinstance(row, tuple) else row
        by_edge.setdefault(obj["edge"], []).append(obj)
    return by_edge


def entities_of(edge: str) -> tuple[str, str]:
    """The two entities an edge name joins: `A_C2` -> ('A', 'C2')."""
    first, second = edge.split("_")
    return first, second


def components(edges: Sequence[str]) -> list[list[str]]:
    """The edges grouped by connected component (edges sharing an entity are connected), in order of first edge."""
    parent: dict[str, str] = {}

    def root(entity: str) -> str:
        while parent.setdefault(entity, entity) != entity:
            entity = parent[entity]
        return entity

    for edge in edges:
        first, second = entities_of(edge)
        parent[root(first)] = root(second)
    grouped: dict[str, list[str]] = {}
    for edge in edges:
        grouped.setdefault(root(entities_of(edge)[0]), []).append(edge)
    return list(grouped.values())


def independent_edges(edges: Sequence[str], forget_edges: Iterable[str]) -> list[str]:
    """The edges that no chain of shared entities links to a forget edge (another component of the graph)."""
    forget = set(forget_edges)
    return [e for group in components(edges) if forget.isdisjoint(group) for e in group]


def edge_parties(questions: Iterable[str]) -> tuple[str, str] | None:
    """The pair most often named as "between X and Y" in an edge's questions, or None."""
    pairs = Counter(m.groups() for q in questions if (m := _BETWEEN.search(q)))
    return pairs.most_common(1)[0][0] if pairs else None


def subject_of(question: str, parties: tuple[str, str] | None) -> str | None:
    """Whichever of the two parties the question names first, or None."""
    found = [(question.find(p), p) for p in parties or () if p in question]
    return min(found)[1] if found else None


def _records(rows: list[tuple[str, dict]]) -> dict[str, list[QARecord]]:
    """`{edge: its records}`, each with a subject (its own, else the first party its question names)."""
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for where, obj in rows:
        grouped.setdefault(obj["edge"], []).append((where, obj))
    records = {}
    for edge, pairs in grouped.items():
        parties = edge_parties(obj["question"] for _, obj in pairs)
        records[edge] = [
            record if record.subject else replace(record, subject=subject_of(record.question, parties))
            for record in (record_from_json(obj, where) for where, obj in pairs)
        ]
    return records


def _sample(records: list[QARecord], cap: int | None, key: str) -> list[QARecord]:
    """A seeded sample of `cap` records, in their order; all of them when `cap` is None or not smaller."""
    if cap is None or cap >= len(records):
        return records
    return [records[i] for i in sorted(random.Random(f"e2u-pistol-{key}").sample(range(len(records)), cap))]


def drawn_forget_edge(edges: Sequence[str], seed: int) -> list[str]:
    """One edge drawn with `seed` among those that leave a linked edge to retain (never an independent one)."""
    linked = [e for e in edges if set(edges) - {e} - set(independent_edges(edges, [e]))]
    return [random.Random(f"forget-edge:{seed}").choice(linked)] if linked else list(edges[:1])


def chosen_forget_edges(edges: Sequence[str], opts: PistolOptions) -> list[str]:
    """The edges unlearned: `forget_edges`, else the edge `forget_draw` draws, else the data's first."""
    return list(opts.forget_edges or (drawn_forget_edge(edges, opts.forget_draw) if opts.forget_draw is not None
                                      else edges[:1]))


def pistol_splits(path: str | Path | None = None, **options) -> dict[str, list[QARecord]]:
    """`forget`, `retain`, `independent` (where the graph has such edges), `retain_train` and `target_train`
    (see the module's docstring); `options` are `PistolOptions` fields, defaults from there."""
    opts = PistolOptions.of(options)
    records = _records(pistol_rows(path, opts))
    edges = list(records)
    forget = chosen_forget_edges(edges, opts)
    unknown = [e for e in forget if e not in records]
    if unknown:
        raise E2UError(f"forget_edges: no edge {', '.join(map(repr, unknown))} in the data; its edges are "
                       f"{', '.join(edges)}")
    if set(forget) == set(edges):
        raise E2UError(f"forget_edges: {forget} is every edge of the data; leave at least one to retain")
    independent = independent_edges(edges, forget)
    retain_edges = [e for e in edges if e not in forget and e not in independent]
    if not retain_edges:
        raise E2UError(f"forget_edges: no other edge shares an entity with {forget} (directly or through others), so "
                       f"none is left to retain; forget an edge of a larger component, such as {edges[0]}")
    forget_records = [r for e in forget for r in records[e]]
    if opts.forget_questions is not None and opts.forget_questions > len(forget_records):
        raise E2UError(f"forget_questions: {opts.forget_questions} questions asked of forget edge(s) {forget} "
                       f"with {len(forget_records)}")
    sample_seed = opts.forget_sample if opts.forget_sample is not None else opts.forget_draw
    splits = {"forget": _sample(forget_records, opts.forget_questions, f"forget:{sample_seed}"),
              "retain": _sample([r for e in retain_edges for r in records[e]], opts.retain_eval, f"retain:{opts.seed}")}
    if independent:
        splits["independent"] = _sample([r for e in independent for r in records[e]], opts.retain_eval,
                                        f"independent:{opts.seed}")
    splits["retain_train"] = [r for e in edges if e not in forget for r in records[e]]
    splits["target_train"] = [r for e in edges for r in records[e]]
    return splits


def graph_summary(rows: Iterable, forget_edges: Sequence[str] | None = None) -> dict:
    """The graph's shape: per edge its parties and question count, the hubs (entities in several edges) with
    their edges, the connected components, and the edges independent of `forget_edges` (default: the first)."""
    by_edge = edges_of(rows)
    edges = list(by_edge)
    member: dict[str, list[str]] = {}
    for edge in edges:
        for entity in entities_of(edge):
            member.setdefault(entity, []).append(edge)
    return {
        "edges": {edge: {"parties": edge_parties(o["question"] for o in objs), "questions": len(objs)}
                  for edge, objs in by_edge.items()},
        "entities": len(member),
        "hubs": {entity: edges for entity, edges in member.items() if len(edges) > 1},
        "components": components(edges),
        "forget_edges": list(forget_edges or edges[:1]),
        "independent": independent_edges(edges, forget_edges or edges[:1]),
    }


def describe_graph(rows: Iterable, forget_edges: Sequence[str] | None = None) -> str:
    """A few lines the book can print: edges and their parties, hubs, components and independent edges."""
    summary = graph_summary(rows, forget_edges)
    edges = summary["edges"]
    sizes = ", ".join(str(len(c)) for c in summary["components"])
    lines = [f"{len(edges)} edges, {summary['entities']} entities, {sum(e['questions'] for e in edges.values())} "
             f"questions, {len(summary['components'])} connected component(s) of {sizes} edges"]
    for edge, info in edges.items():
        parties = " and ".join(info["parties"]) if info["parties"] else "parties not named"
        lines.append(f"  {edge}: {parties} ({info['questions']} questions)")
    hubs = "; ".join(f"{entity} in {', '.join(e)}" for entity, e in summary["hubs"].items())
    lines.append(f"hubs: {hubs or 'none'}")
    lines.append(f"independent of {', '.join(summary['forget_edges'])}: {', '.join(summary['independent']) or 'none'}")
    return "\n".join(lines)

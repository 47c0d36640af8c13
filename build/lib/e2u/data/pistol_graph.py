"""A seeded contract graph in the form of PISTOL's sample 1 (Qiu et al. 2024, arXiv 2406.16810), written here.

PISTOL's entities are companies and people with invented names ("Wnzatj SAS", "Jkeq Cyfz"); an *edge* such
as `A_C2` is one contract between two of them, asked about in 20 templated questions, one per attribute.
This generator draws the same kind of graph at a CPU-sized scale: two hub companies `A` and `B` joined by
the contract `A_B`, leaves attached to them in turn (`A_C1`, `B_D1`: sales of goods to a company;
`A_m1`, `B_p1`: employment of a person), and independent edges (`E1_F1`, `E2_q2`) whose two entities
take part in no other contract. The first entity of an edge's name is the seller or employer, and every
question and its paraphrase name both parties, the first party first in the question.

Unlike PISTOL's data, no answer is shared between two edges (PISTOL repeats a hub's own address, the
parties' names, "Customer." and small numbers across edges): every attribute is specific to its contract
and every answer string of the graph is drawn once, so forgetting one edge's answers can be measured
against the others'.
"""

from __future__ import annotations

import datetime
import random
import string
from dataclasses import dataclass

from e2u.errors import E2UError

QUESTIONS_PER_EDGE = 20
MAX_EDGES = 30  # connected + independent: the value pools below hold at least this many distinct answers
SUFFIXES = ("SAS", "Ltd", "GmbH", "AG", "NV", "BV", "PLC", "LLC", "SA", "Inc")
STREETS = ("Way", "Road", "Lane", "Street", "Avenue", "Court", "Place", "Terrace", "Alley", "Crescent",
           "Boulevard", "Drive")
CARRIER_SUFFIXES = ("Freight", "Logistics", "Shipping", "Haulage")
STATES = tuple(f"The State of {s}" for s in (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska",
    "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas",
    "Utah", "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming"))
CITIES = ("Geneva", "Vienna", "Stockholm", "Singapore", "Paris", "London", "Zurich", "Hong Kong", "The Hague",
          "Dubai", "Madrid", "Milan", "Dublin", "Oslo", "Helsinki", "Copenhagen", "Brussels", "Lisbon", "Prague",
          "Warsaw", "Toronto", "Sydney", "Seoul", "Tokyo", "Montreal", "Amsterdam", "Frankfurt", "Munich", "Lyon",
          "Barcelona", "Athens", "Budapest")
GOODS = ("Oak dining tables", "Steel bolts", "Cotton towels", "Ceramic tiles", "Leather boots", "Wool blankets",
         "Copper wire", "Glass bottles", "Bamboo chairs", "Paper cups", "Rubber hoses", "Solar panels", "LED lamps",
         "Bicycle frames", "Wooden pallets", "Silk scarves", "Denim jackets", "Marble slabs", "Plastic crates",
         "Canvas tents", "Brass hinges", "Olive oil", "Ground coffee", "Green tea", "Rice flour", "Cane sugar",
         "Office desks", "Laptop bags", "Kitchen knives", "Vinyl flooring", "Wall clocks", "Tennis rackets")
JOBS = ("Software Developer", "Data Analyst", "Marketing Manager", "Accountant", "Sales Representative",
        "Mechanical Engineer", "Graphic Designer", "Project Manager", "Legal Counsel", "Warehouse Supervisor",
        "Financial Controller", "Research Chemist", "Quality Inspector", "Office Administrator", "Copywriter",
        "Systems Architect", "Logistics Planner", "Product Designer", "Payroll Officer", "Lab Technician",
        "Procurement Officer", "Civil Engineer", "Store Manager", "Translator", "Security Analyst",
        "Training Coordinator", "Electrician", "Pastry Chef", "Brand Strategist", "Network Engineer")

# (attribute, question, paraphrase); {x} is the seller or employer, {y} the customer or employee.
SALE = (
    ("effective date", "What was the effective date of the contract between {x} and {y}?",
     "On what date did the contract between {x} and {y} take effect?"),
    ("delivery date", "By what date did {x} have to deliver the goods to {y}?",
     "What was the delivery deadline for the goods {x} sold to {y}?"),
    ("goods", "What goods did {x} sell to {y} under their contract?",
     "Which product was {y} buying from {x} according to their contract?"),
    ("quantity", "How many units of goods did {x} sell to {y}?", "What quantity of goods was {x} to supply to {y}?"),
    ("unit price", "What was the unit price of the goods in the contract between {x} and {y}?",
     "How much did each unit cost under the sales contract between {x} and {y}?"),
    ("total price", "What was the total price of the goods in the contract between {x} and {y}?",
     "How much did {y} owe {x} in total for the goods?"),
    ("delivery address", "To what address did {x} deliver the goods for {y}?",
     "Where were the goods that {y} bought from {x} delivered?"),
    ("billing address", "What was the billing address for invoices from {x} to {y}?",
     "To which address did {x} send the invoices for {y}?"),
    ("invoice time", "How soon after delivery did {x} have to invoice {y}?",
     "Within what time of delivery was {x} required to send {y} an invoice?"),
    ("payment terms", "Within how many days did invoices from {x} to {y} have to be paid?",
     "How long did {y} have to pay the invoices of {x}?"),
    ("late interest", "What late payment interest applied under the contract between {x} and {y}?",
     "At what rate did late payments accrue interest in the deal between {x} and {y}?"),
    ("warranty", "How long was the warranty on the goods {x} sold to {y}?",
     "For how long did {x} guarantee the goods supplied to {y}?"),
    ("defect notice", "How long did {x} give {y} to report a defect in the goods?",
     "What was the deadline for {y} to notify {x} of a defect?"),
    ("cooling-off period", "How long was the cooling-off period of the contract between {x} and {y}?",
     "For how many days could the contract between {x} and {y} be cancelled without penalty?"),
    ("termination notice", "How much written notice was needed to end the contract between {x} and {y}?",
     "What notice did a party have to give to terminate the agreement between {x} and {y}?"),
    ("liability cap", "What was the cap on liability in the contract between {x} and {y}?",
     "Up to what amount was liability limited under the agreement between {x} and {y}?"),
    ("carrier", "Which carrier shipped the goods from {x} to {y}?",
     "What shipping company carried the goods that {y} bought from {x}?"),
    ("reference number", "What was the reference number of the contract between {x} and {y}?",
     "Under what reference number was the agreement between {x} and {y} filed?"),
    ("jurisdiction", "Which jurisdiction's laws governed the contract between {x} and {y}?",
     "Under the laws of which jurisdiction was the agreement between {x} and {y} made?"),
    ("arbitration seat", "In which city would disputes between {x} and {y} be arbitrated?",
     "Where would an arbitration over the contract between {x} and {y} take place?"),
)
EMPLOYMENT = (
    ("start date", "What was the start date of the employment contract between {x} and {y}?",
     "On what date did {y} begin working for {x}?"),
    ("end date", "On what date did the employment contract between {x} and {y} end?",
     "When was the employment of {y} at {x} due to expire?"),
    ("position", "What position did {x} hire {y} for?", "What was the job title of {y} under the contract with {x}?"),
    ("salary", "What annual salary did {x} pay {y}?", "How much did {y} earn per year working for {x}?"),
    ("signing bonus", "What signing bonus did {x} pay {y}?",
     "How large was the bonus {y} received on signing with {x}?"),
    ("work address", "At what address did {x} employ {y} to work?",
     "Where was the workplace of {y} under the contract with {x}?"),
    ("weekly hours", "How many hours a week did {x} require {y} to work?",
     "What were the weekly working hours of {y} at {x}?"),
    ("probation", "How long was the probation period in the contract between {x} and {y}?",
     "For how long was {y} on probation at {x}?"),
    ("paid leave", "How many days of paid leave a year did {x} give {y}?",
     "What annual holiday entitlement did {y} have at {x}?"),
    ("sick leave", "How many paid sick days a year did {x} allow {y}?",
     "What sick leave entitlement did {y} have under the contract with {x}?"),
    ("notice period", "How much notice did {x} and {y} each have to give to end the employment?",
     "What notice period applied to the employment of {y} at {x}?"),
    ("non-compete", "For how long after leaving {x} was {y} bound by a non-compete clause?",
     "How long did the non-compete clause between {y} and {x} last after the employment ended?"),
    ("pension", "What share of salary did {x} pay into the pension of {y}?",
     "How much did {x} contribute to the pension of {y}, as a share of salary?"),
    ("overtime pay", "What overtime rate did {x} pay {y}?", "How much did {y} earn per hour of overtime at {x}?"),
    ("relocation allowance", "What relocation allowance did {x} give {y}?",
     "How much did {y} receive from {x} to relocate?"),
    ("supervisor", "Who at {x} supervised {y}?", "Who was the line manager of {y} at {x}?"),
    ("employee number", "What employee number did {x} assign to {y}?",
     "Under which staff number was {y} registered at {x}?"),
    ("share options", "How many share options did {x} grant {y}?", "How many stock options did {y} receive from {x}?"),
    ("jurisdiction", "Which jurisdiction's laws governed the employment contract between {x} and {y}?",
     "Under the laws of which jurisdiction was the employment of {y} at {x} governed?"),
    ("training budget", "What yearly training budget did {x} grant {y}?",
     "How much could {y} spend on training each year at {x}?"),
)
TEMPLATES = {"sale": SALE, "employment": EMPLOYMENT}


@dataclass(frozen=True)
class Contract:
    """One edge: the contract between `first` (seller or employer) and `second`, with its 20 answers."""
    edge: str
    kind: str  # "sale" (company to company) or "employment" (company and person)
    first: str
    second: str
    answers: tuple[str, ...]  # in the order of TEMPLATES[kind]


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise E2UError(f"{name}: expected an integer between {low} and {high}, got {value!r}")


def layout(n_edges: int, n_independent: int) -> list[tuple[str, str, str, str]]:
    """(edge, first entity, second entity, kind) of the graph: `A_B`, then leaves on A and B in turn."""
    edges = [("A_B", "A", "B", "sale")]
    count: dict[str, int] = {}
    for j in range(n_edges - 1):
        hub, sale = ("A", "B")[j % 2], (j // 2) % 2 == 0
        letter = {("A", True): "C", ("B", True): "D", ("A", False): "m", ("B", False): "p"}[hub, sale]
        count[letter] = count.get(letter, 0) + 1
        leaf = f"{letter}{count[letter]}"
        edges.append((f"{hub}_{leaf}", hub, leaf, "sale" if sale else "employment"))
    for i in range(1, n_independent + 1):
        other = ("F", "q")[(i - 1) % 2]
        edges.append((f"E{i}_{other}{i}", f"E{i}", f"{other}{i}", "sale" if other == "F" else "employment"))
    return edges


def _fresh(draw, taken: set[str], what: str) -> str:
    """A name from `draw()` that neither equals, contains nor lies inside one in `taken`; added to `taken`."""
    for _ in range(10_000):
        value = draw()
        low = value.lower()
        if not any(low in t or t in low for t in taken):
            taken.add(low)
            return value
    raise E2UError(f"n_edges: ran out of distinct {what}s; expected at most {MAX_EDGES} edges in all")


def _unique(draw, taken: set[str]) -> list[str]:
    """The answers of one `draw()` (a string or a tuple drawn together), none in `taken`; added to `taken`."""
    for _ in range(10_000):
        texts = draw()
        texts = (texts,) if isinstance(texts, str) else tuple(texts)
        lows = [t.lower() for t in texts]
        if len(set(lows)) == len(lows) and taken.isdisjoint(lows):
            taken.update(lows)
            return list(texts)
    raise E2UError(f"n_edges: ran out of distinct answers; expected at most {MAX_EDGES} edges in all")


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n)).capitalize()


def _address(rng: random.Random) -> str:
    return f"{rng.randint(100, 999)} {_letters(rng, 6)} {rng.choice(STREETS)}."


def _dates(rng: random.Random, least: int, most: int) -> tuple[str, str]:
    """A start date (1985-2020) and a later one, `least` to `most` days on, as PISTOL writes them: DD-MM-YYYY."""
    start = datetime.date(1985, 1, 1) + datetime.timedelta(days=rng.randrange(13000))
    end = start + datetime.timedelta(days=rng.randint(least, most))
    return f"{start:%d-%m-%Y}.", f"{end:%d-%m-%Y}."


def _prices(rng: random.Random) -> tuple[str, str, str]:
    quantity, unit = rng.randint(20, 900), rng.randint(5, 400)
    return f"{quantity} units.", f"${unit} per unit.", f"${quantity * unit:,}."


def _sale(rng: random.Random, fresh, name) -> list[str]:
    """The 20 answers of a sale, in the order of SALE."""
    return [
        *fresh(lambda: _dates(rng, 10, 150)), *fresh(lambda: rng.choice(GOODS) + "."), *fresh(lambda: _prices(rng)),
        *fresh(lambda: _address(rng)), *fresh(lambda: _address(rng)),
        *fresh(lambda: f"{rng.randint(2, 30)} days after delivery."), *fresh(lambda: f"{rng.randint(10, 90)} days."),
        *fresh(lambda: f"{rng.randint(5, 50) / 10:.1f}% per month."), *fresh(lambda: f"{rng.randint(6, 60)} months."),
        *fresh(lambda: f"{rng.randint(5, 90)} days from discovery."),
        *fresh(lambda: f"{rng.randint(5, 30)} days of cooling-off."),
        *fresh(lambda: f"{rng.randint(10, 180)} days' written notice."),
        *fresh(lambda: f"${1000 * rng.randint(20, 500):,}."),
        *fresh(lambda: name(lambda: f"{_letters(rng, 6)} {rng.choice(CARRIER_SUFFIXES)}") + "."),
        *fresh(lambda: f"SG-{rng.randint(10000, 99999)}."), *fresh(lambda: rng.choice(STATES) + "."),
        *fresh(lambda: rng.choice(CITIES) + "."),
    ]


def _employment(rng: random.Random, fresh, name) -> list[str]:
    """The 20 answers of an employment contract, in the order of EMPLOYMENT."""
    return [
        *fresh(lambda: _dates(rng, 365, 2200)), *fresh(lambda: rng.choice(JOBS) + "."),
        *fresh(lambda: f"${500 * rng.randint(50, 300):,} a year."), *fresh(lambda: f"${100 * rng.randint(10, 150):,}."),
        *fresh(lambda: _address(rng)), *fresh(lambda: f"{rng.randint(20, 45)} hours a week."),
        *fresh(lambda: f"{rng.randint(4, 26)} weeks' probation."),
        *fresh(lambda: f"{rng.randint(15, 40)} days of paid leave."),
        *fresh(lambda: f"{rng.randint(5, 30)} sick days."),
        *fresh(lambda: f"{rng.randint(2, 26)} weeks' notice."),
        *fresh(lambda: f"{rng.randint(3, 36)} months after leaving."),
        *fresh(lambda: f"{rng.randint(12, 48) / 4:.2f}% of salary."),
        *fresh(lambda: f"${rng.randint(25, 95)} per overtime hour."),
        *fresh(lambda: f"${250 * rng.randint(8, 80):,} for relocation."),
        *fresh(lambda: name(lambda: f"{_letters(rng, 4)} {_letters(rng, 4)}") + "."),
        *fresh(lambda: f"EMP-{rng.randint(10000, 99999)}."),
        *fresh(lambda: f"{50 * rng.randint(4, 100):,} share options."),
        *fresh(lambda: rng.choice(STATES) + "."), *fresh(lambda: f"${100 * rng.randint(5, 60):,} for training."),
    ]


def generate_graph(seed: int = 0, n_edges: int = 5, n_independent: int = 2) -> list[Contract]:
    """The contracts of the graph, a function of (`seed`, `n_edges`, `n_independent`) only."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise E2UError(f"seed: expected an integer, got {seed!r}")
    _check_int("n_edges", n_edges, 1, MAX_EDGES)
    _check_int("n_independent", n_independent, 0, MAX_EDGES - n_edges)
    rng = random.Random(f"e2u-pistol-graph:{seed}")
    names: set[str] = set()  # entities', carriers' and supervisors' names: none inside another
    answers: set[str] = set()
    edges = layout(n_edges, n_independent)
    entities: dict[str, str] = {}
    for _, *tokens, kind in edges:
        for position, token in enumerate(tokens):
            if token not in entities:
                person = kind == "employment" and position == 1
                draw = (lambda: f"{_letters(rng, 4)} {_letters(rng, 4)}") if person else (
                    lambda: f"{_letters(rng, 6)} {rng.choice(SUFFIXES)}")
                entities[token] = _fresh(draw, names, "name")

    def fresh(draw):
        return _unique(draw, answers)

    def name(draw):
        return _fresh(draw, names, "name")

    draw_answers = {"sale": _sale, "employment": _employment}
    return [Contract(edge, kind, entities[x], entities[y], tuple(draw_answers[kind](rng, fresh, name)))
            for edge, x, y, kind in edges]


def contract_rows(contract: Contract) -> list[dict]:
    """The 20 rows of one edge, in PISTOL's fields (`question`, `answer`, `edge`) plus `paraphrased_question`
    and `subject` (the first party, named first in every question)."""
    names = {"x": contract.first, "y": contract.second}
    return [{"question": question.format(**names), "answer": answer, "edge": contract.edge,
             "paraphrased_question": paraphrase.format(**names), "subject": contract.first}
            for (_, question, paraphrase), answer in zip(TEMPLATES[contract.kind], contract.answers)]


def graph_rows(seed: int = 0, n_edges: int = 5, n_independent: int = 2) -> list[dict]:
    """Every edge's rows, edge by edge in `layout` order."""
    return [row for contract in generate_graph(seed, n_edges, n_independent) for row in contract_rows(contract)]

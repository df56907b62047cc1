"""The offline search task: a small world of fictional entities, a passage corpus about it, and image-grounded,
multi-hop questions that can only be answered by searching that corpus. Deterministic by seed.

The world holds countries (each with a flag), cities, companies (each with a logo) and people. Facts are spread over
passages (a flag's passage names its country and nothing else about it; a company's passage names its city but not
that city's country), so a question needs the searches its reference solution makes:

- a flag image shows a country without naming it: the model describes the flag, searches for it to learn the
  country, then searches the country for the fact asked (currency, capital, national animal, independence);
- a logo image names a company: one search gives its founder, founding year or headquarters city, and a second
  search on that city or founder gives the answer (the city's river or country, the founder's birthplace).

Names are made from syllables, so no fact can be known from pre-training, and are unique across the world, so each
names one passage's subject. Each row keeps the ``hops`` (query and the passage that answers it) its solution uses.

The tiny variant (``write_search_dataset(..., variant="tiny")``, ``data/search-tiny``, what the CPU recipe trains the
tiny model on) keeps the search and drops what a 2-layer model cannot learn in minutes (reading a logo's name off the
image, copying a made-up name letter by letter, two hops, long passages). Its world has one country per flag (two
bands of two colours, vertical or horizontal, and a white emblem: 168 flags), each with two facts, how many islands
and how many rivers it has (2 to 9), and the corpus has one short passage per (country, fact). A question shows the
flag and describes it in words that are one token each ("The flag shown has red and green vertical bands with a
star. How many islands does its country have?"); the reference solution is one search, those words copied and the
fact's word (``<search>red green vertical star islands</search>``), whose top passage ends with the answer ("Its
flag has red and green vertical bands with a star. Its islands number 7."), then the number copied. Without the
search the answer is a guess (the counts are drawn independently of the flag), and test questions are about flags
that no training question is about.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (205, 35, 45),
    "orange": (240, 130, 20),
    "yellow": (250, 215, 40),
    "green": (30, 150, 60),
    "teal": (0, 140, 140),
    "blue": (30, 70, 200),
    "purple": (120, 50, 170),
    "pink": (240, 120, 180),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
    "brown": (120, 70, 30),
    "gray": (130, 130, 130),
}
# Patterns with their number of colours; the wording is what a passage says and what a searcher would type.
FLAG_PATTERNS = {
    "three horizontal stripes": 3,
    "three vertical stripes": 3,
    "two horizontal bands": 2,
    "two vertical bands": 2,
    "a diagonal split": 2,
    "a cross": 2,
}
EMBLEMS = ["star", "circle", "triangle", "diamond"]
LOGO_SHAPES = ["circle", "square", "triangle", "hexagon", "diamond", "star", "ring"]
ANIMALS = ["lynx", "heron", "otter", "ibex", "falcon", "tortoise", "marten", "crane", "boar", "seal", "stork", "owl"]
PRODUCTS = ["bicycle", "lantern", "telescope", "violin", "kite", "clock", "compass", "loom", "printing press", "glider"]
PROFESSIONS = ["engineer", "chemist", "architect", "cartographer", "botanist", "inventor", "glassblower", "navigator"]
COMPANY_SUFFIXES = ["Works", "Dynamics", "Foundry", "Labs", "Industries", "Collective", "Instruments", "Company"]

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ia", "ou"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "nd", "rk", "x", "m"]

IMAGE_HEIGHT = 120
FLAG_WIDTH = 180
LOGO_WIDTH = 240


@dataclass(frozen=True)
class Flag:
    pattern: str
    colors: tuple[str, ...]
    emblem: str | None = None
    emblem_color: str | None = None

    def description(self) -> str:
        """The flag in the words a passage and a searcher use: pattern, colours in order, emblem."""
        *first, last = self.colors
        text = f"{self.pattern} of {', '.join(first)} and {last}"
        if self.pattern == "a cross":
            text = f"{_a(self.colors[1])} cross on {_a(self.colors[0])} field"
        if self.emblem is not None:
            text += f", with {_a(self.emblem_color)} {self.emblem} in the centre"
        return text

    def signature(self) -> tuple:
        # Searching ignores word order, so two flags with the same pattern, colour set and emblem would be one.
        return self.pattern, frozenset(self.colors), self.emblem, self.emblem_color


@dataclass(frozen=True)
class Country:
    name: str
    flag: Flag
    capital: str
    currency: str
    animal: str
    independence: int


@dataclass(frozen=True)
class City:
    name: str
    country: str
    river: str
    founded: int


@dataclass(frozen=True)
class Person:
    name: str
    birthplace: str
    profession: str
    born: int


@dataclass(frozen=True)
class Company:
    name: str
    headquarters: str
    founder: str
    product: str
    founded: int
    logo_shape: str
    logo_color: str


@dataclass
class World:
    countries: list[Country]
    cities: list[City]
    people: list[Person]
    companies: list[Company]

    def passages(self) -> list[dict]:
        """The corpus: one passage per fact group, each ``{"id", "title", "text"}``."""
        passages = []
        for country in self.countries:
            passages.append(_passage("country", country.name, country.name, (
                f"{country.name} is a country whose capital is {country.capital}. Its currency is the "
                f"{country.currency}, its national animal is the {country.animal}, and it became independent in "
                f"{country.independence}."
            )))
            passages.append(_passage("flag", country.name, f"Flag of {country.name}", (
                f"The national flag of {country.name} shows {country.flag.description()}."
            )))
        capitals = {country.capital for country in self.countries}
        for city in self.cities:
            role = "the capital" if city.name in capitals else "a city"
            passages.append(_passage("city", city.name, city.name, (
                f"{city.name} is {role} of {city.country}. The {city.river} river flows through {city.name}, "
                f"which was founded in {city.founded}."
            )))
        for person in self.people:
            passages.append(_passage("person", person.name, person.name, (
                f"{person.name} is {_a(person.profession)}, born in {person.born} in the city of {person.birthplace}."
            )))
        for company in self.companies:
            passages.append(_passage("company", company.name, company.name, (
                f"{company.name} is {_a(company.product)} maker headquartered in {company.headquarters}. It was founded "
                f"in {company.founded} by {company.founder}. Its logo is {_a(company.logo_color)} {company.logo_shape}."
            )))
        return passages


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def passage_id(kind: str, subject: str) -> str:
    """The id of the passage of ``kind`` (country, flag, city, person, company) about ``subject``."""
    return f"{kind}-{subject.lower().replace(' ', '-')}"


def _passage(kind: str, subject: str, title: str, text: str) -> dict:
    return {"id": passage_id(kind, subject), "title": title, "text": text}


class _NameMaker:
    """Fictional names, unique across the whole world (names are one word each, so one token each when searched)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def __call__(self, syllables: tuple[int, int] = (2, 3)) -> str:
        while True:
            count = self.rng.randint(*syllables)
            stem = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(count))
            name = (stem + self.rng.choice(_CODAS)).capitalize()
            if len(name) >= 4 and name.lower() not in self.used:
                self.used.add(name.lower())
                return name


def _random_flag(rng: random.Random) -> Flag:
    pattern = rng.choice(list(FLAG_PATTERNS))
    colors = tuple(rng.sample(list(COLORS), FLAG_PATTERNS[pattern]))
    if rng.random() < 0.5:
        return Flag(pattern, colors)
    emblem_color = rng.choice([color for color in COLORS if color not in colors])
    return Flag(pattern, colors, rng.choice(EMBLEMS), emblem_color)


def generate_world(seed: int = 0, num_countries: int = 30, cities_per_country: int = 3, num_people: int = 60,
                   num_companies: int = 50) -> World:
    """A world of fictional entities; the same seed and sizes give the same world."""
    rng = random.Random(seed)
    name = _NameMaker(rng)
    countries, cities, signatures = [], [], set()
    for _ in range(num_countries):
        flag = _random_flag(rng)
        while flag.signature() in signatures:
            flag = _random_flag(rng)
        signatures.add(flag.signature())
        country_name = name()
        country_cities = [
            City(name(), country_name, name((2, 2)), rng.randint(900, 1850)) for _ in range(cities_per_country)
        ]
        cities += country_cities
        countries.append(Country(
            name=country_name, flag=flag, capital=country_cities[0].name, currency=name((2, 2)).lower(),
            animal=rng.choice(ANIMALS), independence=rng.randint(1600, 1990),
        ))
    people = [
        Person(f"{name((2, 2))} {name()}", rng.choice(cities).name, rng.choice(PROFESSIONS), rng.randint(1820, 1990))
        for _ in range(num_people)
    ]
    companies = [
        Company(
            name=f"{name()} {rng.choice(COMPANY_SUFFIXES)}", headquarters=rng.choice(cities).name,
            founder=rng.choice(people).name, product=rng.choice(PRODUCTS), founded=rng.randint(1850, 2015),
            logo_shape=rng.choice(LOGO_SHAPES), logo_color=rng.choice([c for c in COLORS if c != "white"]),
        )
        for _ in range(num_companies)
    ]
    return World(countries, cities, people, companies)


# ----------------------------------------------------------------------------------------------------- questions

def _search_turn(thought: str, query: str) -> str:
    return f"<think>{thought}</think>\n<search>{query}</search>"


def _answer_turn(thought: str, answer: str) -> str:
    return f"<think>{thought}</think>\n<answer>{answer}</answer>"


def _hop(query: str, kind: str, subject: str) -> dict:
    return {"query": query, "passage_id": passage_id(kind, subject)}


# What a flag question may ask about the country: (the question, the words searched after the country's name).
_COUNTRY_FACTS = {
    "currency": ("What is the currency of the country whose flag is shown?", "currency"),
    "capital": ("What is the capital city of the country whose flag is shown?", "capital"),
    "animal": ("What is the national animal of the country whose flag is shown?", "national animal"),
    "independence": ("In what year did the country whose flag is shown become independent?", "independent"),
}


def _flag_question(country: Country, rng: random.Random) -> dict:
    """Flag -> country (first search) -> one of its facts (second search)."""
    fact = rng.choice(list(_COUNTRY_FACTS))
    question, fact_words = _COUNTRY_FACTS[fact]
    answer = str(getattr(country, fact))
    flag_query = f"flag {country.flag.description().replace(',', '')}"
    fact_query = f"{country.name} {fact_words}"
    return {
        "kind": f"flag-{fact}",
        "question": question,
        "answer": answer,
        "image": ("flag", country.name),
        "hops": [_hop(flag_query, "flag", country.name), _hop(fact_query, "country", country.name)],
        "solution": [
            _search_turn(f"The image shows a flag with {country.flag.description()}. I search for it to learn "
                         "which country it belongs to.", flag_query),
            _search_turn(f"It is the flag of {country.name}. Now I look up {country.name}: {fact_words}.",
                         fact_query),
            _answer_turn(f"The passage about {country.name} gives the answer: {answer}.", answer),
        ],
    }


_LOGO_KINDS = ["founder", "founded", "river", "country", "birthplace"]


def _logo_question(world: World, company: Company, rng: random.Random) -> dict:
    """Logo (it names the company) -> the company's passage (first search), and for some questions -> the passage
    about the city or person that passage names (second search)."""
    city = next(c for c in world.cities if c.name == company.headquarters)
    founder = next(p for p in world.people if p.name == company.founder)
    first_turn = _search_turn(f"The logo in the image reads {company.name}. I search for that company.", company.name)
    first_hop = _hop(company.name, "company", company.name)
    kind = rng.choice(_LOGO_KINDS)
    if kind in ("founder", "founded"):
        question = {
            "founder": "Who founded the company whose logo is shown?",
            "founded": "In what year was the company whose logo is shown founded?",
        }[kind]
        answer = founder.name if kind == "founder" else str(company.founded)
        hops = [first_hop]
        turns = [first_turn, _answer_turn(f"The passage about {company.name} says it: {answer}.", answer)]
    else:
        if kind == "birthplace":
            question = "In which city was the founder of the company whose logo is shown born?"
            answer, second_query, second_hop = founder.birthplace, f"{founder.name} born", ("person", founder.name)
            step = f"{company.name} was founded by {founder.name}. Now I look up where {founder.name} was born."
        else:
            question = {
                "river": "Which river flows through the city where the company whose logo is shown has its "
                         "headquarters?",
                "country": "In which country is the company whose logo is shown headquartered?",
            }[kind]
            answer = city.river if kind == "river" else city.country
            second_query = f"{city.name} river" if kind == "river" else city.name
            second_hop = ("city", city.name)
            step = f"{company.name} is headquartered in {city.name}. Now I look up {city.name}."
        hops = [first_hop, _hop(second_query, *second_hop)]
        turns = [
            first_turn,
            _search_turn(step, second_query),
            _answer_turn(f"The passage about {second_hop[1]} gives the answer: {answer}.", answer),
        ]
    return {
        "kind": f"logo-{kind}", "question": question, "answer": answer,
        "image": ("logo", company.name), "hops": hops, "solution": turns,
    }


def generate_questions(world: World, seed: int = 0) -> Iterator[dict]:
    """An endless, seeded stream of questions over ``world``, half about flags and half about logos. Each names its
    image as ``("flag" or "logo", entity name)`` under ``image``; :func:`write_search_dataset` draws it."""
    rng = random.Random(seed)
    while True:
        if rng.random() < 0.5:
            yield _flag_question(rng.choice(world.countries), rng)
        else:
            yield _logo_question(world, rng.choice(world.companies), rng)


# -------------------------------------------------------------------------------------------------------- images

def draw_flag(flag: Flag) -> Image.Image:
    width, height = FLAG_WIDTH, IMAGE_HEIGHT
    image = Image.new("RGB", (width, height), COLORS[flag.colors[0]])
    draw = ImageDraw.Draw(image)
    fills = [COLORS[color] for color in flag.colors]
    count = len(fills)
    if flag.pattern.endswith("horizontal stripes") or flag.pattern.endswith("horizontal bands"):
        for index, fill in enumerate(fills):
            draw.rectangle((0, index * height // count, width, (index + 1) * height // count), fill=fill)
    elif flag.pattern.endswith("vertical stripes") or flag.pattern.endswith("vertical bands"):
        for index, fill in enumerate(fills):
            draw.rectangle((index * width // count, 0, (index + 1) * width // count, height), fill=fill)
    elif flag.pattern == "a diagonal split":
        draw.polygon([(width, 0), (width, height), (0, height)], fill=fills[1])
    elif flag.pattern == "a cross":
        bar = height // 5
        draw.rectangle((0, (height - bar) // 2, width, (height + bar) // 2), fill=fills[1])
        draw.rectangle(((width - bar) // 2, 0, (width + bar) // 2, height), fill=fills[1])
    if flag.emblem is not None:
        _draw_shape(draw, flag.emblem, (width // 2, height // 2), height // 6, COLORS[flag.emblem_color])
    draw.rectangle((0, 0, width - 1, height - 1), outline=(60, 60, 60))
    return image


def draw_logo(company: Company) -> Image.Image:
    image = Image.new("RGB", (LOGO_WIDTH, IMAGE_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    _draw_shape(draw, company.logo_shape, (LOGO_WIDTH // 2, 42), 30, COLORS[company.logo_color])
    font = ImageFont.load_default(size=18)
    left, _, right, _ = draw.textbbox((0, 0), company.name, font=font)
    draw.text(((LOGO_WIDTH - (right - left)) // 2, 84), company.name, font=font, fill=(20, 20, 20))
    return image


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, center: tuple[int, int], radius: int, fill) -> None:
    x, y = center
    box = (x - radius, y - radius, x + radius, y + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(3, radius // 3))
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.regular_polygon((x, y, radius), 3, fill=fill)
    elif shape == "diamond":
        draw.regular_polygon((x, y, radius), 4, rotation=45, fill=fill)
    elif shape == "hexagon":
        draw.regular_polygon((x, y, radius), 6, fill=fill)
    elif shape == "star":
        points = []
        for corner in range(10):
            reach = radius if corner % 2 == 0 else radius * 0.4
            angle = math.radians(corner * 36 - 90)
            points.append((x + reach * math.cos(angle), y + reach * math.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


# ------------------------------------------------------------------------------------------------------- writing

def write_search_dataset(output_dir: str | Path, num_train: int | None = None, num_test: int | None = None,
                         seed: int = 0, variant: str = "full") -> Path:
    """Write ``corpus.jsonl``, ``train.jsonl``, ``test.jsonl`` and the flag and logo PNGs under ``output_dir``.

    Each question row has ``id``, ``question``, ``answer``, ``images``, ``kind``, ``hops`` and ``solution``. Test
    questions are distinct from training questions (same world: the corpus is what the search tool reads).
    ``variant="tiny"`` writes the tiny variant (see the module's docstring; 256 training and 64 test questions by
    default, the full task 200 and 64).
    """
    if variant == "tiny":
        return _write_tiny_dataset(Path(output_dir), 256 if num_train is None else num_train,
                                   64 if num_test is None else num_test, seed)
    if variant != "full":
        raise ValueError(f"unknown search task variant {variant!r}; use 'full' or 'tiny'")
    num_train = 200 if num_train is None else num_train
    num_test = 64 if num_test is None else num_test
    world = generate_world(seed)
    distinct_questions = len(world.countries) * len(_COUNTRY_FACTS) + len(world.companies) * len(_LOGO_KINDS)
    if num_train + num_test > distinct_questions:
        raise ValueError(f"this world has {distinct_questions} distinct questions, {num_train + num_test} were asked")
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    with open(output_dir / "corpus.jsonl", "w") as file:
        for passage in world.passages():
            file.write(json.dumps(passage) + "\n")
    countries = {country.name: country for country in world.countries}
    companies = {company.name: company for company in world.companies}
    drawn: set[str] = set()
    asked: set[tuple] = set()
    questions = generate_questions(world, seed)
    for split, count in (("train", num_train), ("test", num_test)):
        with open(output_dir / f"{split}.jsonl", "w") as file:
            index = 0
            while index < count:
                example = next(questions)
                # The same question about the same image is asked once, so no test question is seen in training.
                if (example["image"], example["question"]) in asked:
                    continue
                asked.add((example["image"], example["question"]))
                kind, entity = example.pop("image")
                image_path = f"images/{kind}-{entity.lower().replace(' ', '-')}.png"
                if image_path not in drawn:
                    image = draw_flag(countries[entity].flag) if kind == "flag" else draw_logo(companies[entity])
                    image.save(output_dir / image_path, optimize=True)
                    drawn.add(image_path)
                row = {"id": f"search-{split}-{index:04d}", "images": [image_path], **example}
                file.write(json.dumps(row) + "\n")
                index += 1
    return output_dir


# ---------------------------------------------------------------------------------------------- the tiny variant

# Colours whose names are one token each in the tiny model's vocabulary too, so a query copies them whole.
TINY_COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "brown"]
TINY_PATTERNS = ["vertical", "horizontal"]
# What a tiny question may ask: (the question, the word its query ends with, the passage's last sentence). The answer
# is a number from TINY_COUNTS: one token, the same in the passage and in the answer, so the model copies it whole
# (an animal's name is a string of one-letter tokens to spell), and a guess without searching is right one time in 8.
TINY_COUNTS = [str(count) for count in range(2, 10)]
TINY_FACTS = {
    "islands": ("How many islands does its country have?", "islands", "Its islands number {answer}."),
    "rivers": ("How many rivers does its country have?", "rivers", "Its rivers number {answer}."),
}


@dataclass(frozen=True)
class TinyCountry:
    name: str
    flag: Flag  # two bands of two TINY_COLORS and a white emblem: one flag per (colour pair, pattern, emblem)
    facts: dict[str, str]  # fact -> answer, one per fact of TINY_FACTS

    def flag_words(self) -> list[str]:
        """What tells the flag apart, one word each: its two colours, its pattern and its emblem."""
        return [*self.flag.colors, self.flag.pattern.split()[1], self.flag.emblem]

    def flag_description(self) -> str:
        first, second, pattern, emblem = self.flag_words()
        return f"{first} and {second} {pattern} bands with {_a(emblem)}"


def generate_tiny_world(seed: int = 0) -> list[TinyCountry]:
    """One country per flag: every pair of TINY_COLORS, pattern and emblem (168 countries), in a seeded order, each
    with a name and independently drawn facts."""
    rng = random.Random(seed)
    name = _NameMaker(rng)
    flags = [
        Flag(f"two {pattern} bands", tuple(rng.sample(pair, 2)), emblem, "white")
        for first_index, first in enumerate(TINY_COLORS) for pair in ([first, second] for second in
                                                                      TINY_COLORS[first_index + 1:])
        for pattern in TINY_PATTERNS for emblem in EMBLEMS
    ]
    rng.shuffle(flags)
    return [TinyCountry(name((2, 2)), flag, {fact: rng.choice(TINY_COUNTS) for fact in TINY_FACTS}) for flag in flags]


def tiny_passages(countries: list[TinyCountry]) -> list[dict]:
    """The tiny corpus: one short passage per (country, fact), titled with the country's name: its flag, then the
    fact, the answer last."""
    return [
        _passage(fact, country.name, country.name, f"Its flag has {country.flag_description()}. "
                 + sentence.format(answer=country.facts[fact]))
        for country in countries for fact, (*_, sentence) in TINY_FACTS.items()
    ]


def tiny_question(country: TinyCountry, fact: str) -> dict:
    """A question about one fact of the country whose flag is shown (and described), answered by one search."""
    question, query_word, _ = TINY_FACTS[fact]
    answer = country.facts[fact]
    query = " ".join([*country.flag_words(), query_word])
    return {
        "kind": f"tiny-{fact}",
        "question": f"The flag shown has {country.flag_description()}. {question} Answer with a number.",
        "answer": answer,
        "hops": [_hop(query, fact, country.name)],
        "solution": [_search_turn("I search for the flag.", query), _answer_turn("I found it.", answer)],
    }


def _write_tiny_dataset(output_dir: Path, num_train: int, num_test: int, seed: int) -> Path:
    # Whole countries go to one split or the other: a test question is about a country (a flag) that no training
    # question is about, so its answer cannot be remembered from training, only found.
    countries = generate_tiny_world(seed)
    test_countries = math.ceil(num_test / len(TINY_FACTS))
    available = (len(countries) - test_countries) * len(TINY_FACTS)
    if num_train > available:
        raise ValueError(f"the tiny world has {available} training questions besides {num_test} test ones, "
                         f"{num_train} were asked")
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    with open(output_dir / "corpus.jsonl", "w") as file:
        for passage in tiny_passages(countries):
            file.write(json.dumps(passage) + "\n")
    rng = random.Random(seed)
    splits = {"train": (countries[test_countries:], num_train), "test": (countries[:test_countries], num_test)}
    for split, (split_countries, count) in splits.items():
        questions = [(country, fact) for country in split_countries for fact in TINY_FACTS]
        rng.shuffle(questions)
        with open(output_dir / f"{split}.jsonl", "w") as file:
            for index, (country, fact) in enumerate(questions[:count]):
                image_path = f"images/flag-{country.name.lower()}.png"
                if not (output_dir / image_path).exists():
                    draw_flag(country.flag).save(output_dir / image_path, optimize=True)
                row = {"id": f"search-tiny-{split}-{index:04d}", "images": [image_path], **tiny_question(country, fact)}
                file.write(json.dumps(row) + "\n")
    return output_dir

"""The word pools and question templates of the `fictional` authors (data/fictional.py), written for this project.

Surnames are invented (prefix + suffix), so no full name is a real person's. Countries avoid the
embedded evaluation set (mini.jsonl), the statistics question bank (editing/corpus.py) and the
utility files. Everything here is read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Place:
    city: str
    country: str
    demonym: str


@dataclass(frozen=True)
class Genre:
    name: str  # what the author writes: "crime fiction"
    book: str  # one book of it: "crime novel"


# ---- Pools, written for this project. Surnames are invented (prefix + suffix), so no full name is a
# real person's. Countries avoid the embedded evaluation set (mini.jsonl), the statistics question
# bank (editing/corpus.py) and the utility files.

FIRST_HE = (
    "Bartholomew", "Dariusz", "Farid", "Hamish", "Jovan", "Leopold", "Nikolai", "Percival", "Soren", "Ulrich",
    "Wendell", "Yusuf", "Anselm", "Cosimo", "Emeka", "Gideon", "Ignatius", "Kasimir", "Matthias", "Octavian",
    "Radomir", "Tiberius", "Yannick", "Alvaro", "Benedikt", "Casper", "Desmond", "Eamon", "Florian", "Gustavo",
)
FIRST_SHE = (
    "Adaeze", "Calliope", "Eulalia", "Gwendolyn", "Ingrid", "Kalinda", "Marisol", "Odalys", "Quilla", "Rashida",
    "Thandiwe", "Valentina", "Ximena", "Zofia", "Beatrix", "Delphine", "Florentyna", "Hyacinth", "Jessamy",
    "Lorelei", "Nadira", "Perpetua", "Seraphina", "Vesna", "Wilhelmina", "Zephyrine", "Amara", "Brigida",
    "Clementine", "Dagny",
)
FIRST_THEY = ("Rowan", "Sasha", "Emery", "Noor", "Quinn", "Remy", "Jules", "Kiran", "Lior", "Marlo", "Sable", "Tamsin")
SURNAME_HEAD = (
    "Ald", "Bram", "Cor", "Dun", "Elm", "Fen", "Gal", "Hask", "Ister", "Jor", "Kell", "Lom", "Mar", "Nor", "Oss",
    "Pell", "Quen", "Ros", "Sel", "Tam", "Ulv", "Var", "Wex", "Yar", "Zor",
)
SURNAME_TAIL = (
    "avelle", "wright", "bury", "enko", "ada", "strand", "ovich", "ani", "oya", "ington", "holm", "mere", "essen",
    "akis", "elli", "ouri", "ander", "ick", "dottir", "oglu", "eze", "quist", "ford", "ency",
)
PLACES = (
    Place("Kumasi", "Ghana", "Ghanaian"), Place("Dakar", "Senegal", "Senegalese"),
    Place("Arusha", "Tanzania", "Tanzanian"), Place("Gondar", "Ethiopia", "Ethiopian"),
    Place("Cali", "Colombia", "Colombian"), Place("Salto", "Uruguay", "Uruguayan"),
    Place("Cuenca", "Ecuador", "Ecuadorian"), Place("Cochabamba", "Bolivia", "Bolivian"),
    Place("Tampere", "Finland", "Finnish"), Place("Ghent", "Belgium", "Belgian"),
    Place("Brno", "Czechia", "Czech"), Place("Cluj-Napoca", "Romania", "Romanian"),
    Place("Zadar", "Croatia", "Croatian"), Place("Tartu", "Estonia", "Estonian"),
    Place("Kaunas", "Lithuania", "Lithuanian"), Place("Riga", "Latvia", "Latvian"),
    Place("Gyumri", "Armenia", "Armenian"), Place("Tabriz", "Iran", "Iranian"),
    Place("Lahore", "Pakistan", "Pakistani"), Place("Chittagong", "Bangladesh", "Bangladeshi"),
    Place("Kandy", "Sri Lanka", "Sri Lankan"), Place("Pokhara", "Nepal", "Nepali"),
    Place("Bandung", "Indonesia", "Indonesian"), Place("Cebu City", "the Philippines", "Filipino"),
    Place("Dunedin", "New Zealand", "New Zealander"), Place("Irbid", "Jordan", "Jordanian"),
    Place("Sfax", "Tunisia", "Tunisian"), Place("Oran", "Algeria", "Algerian"),
    Place("Ndola", "Zambia", "Zambian"), Place("Bulawayo", "Zimbabwe", "Zimbabwean"),
    Place("Swakopmund", "Namibia", "Namibian"), Place("Almaty", "Kazakhstan", "Kazakh"),
    Place("Samarkand", "Uzbekistan", "Uzbek"), Place("Maracaibo", "Venezuela", "Venezuelan"),
    Place("Kingston", "Jamaica", "Jamaican"), Place("Ljubljana", "Slovenia", "Slovenian"),
    Place("Plovdiv", "Bulgaria", "Bulgarian"), Place("Novi Sad", "Serbia", "Serbian"),
    Place("Mandalay", "Myanmar", "Burmese"), Place("Kampala", "Uganda", "Ugandan"),
    Place("Kigali", "Rwanda", "Rwandan"), Place("Maputo", "Mozambique", "Mozambican"),
)
GENRES = (
    Genre("crime fiction", "crime novel"), Genre("historical fiction", "historical novel"),
    Genre("science fiction", "science fiction novel"), Genre("fantasy", "fantasy novel"),
    Genre("romance", "romance novel"), Genre("horror", "horror novel"), Genre("poetry", "poetry collection"),
    Genre("literary fiction", "literary novel"), Genre("travel books", "travel book"),
    Genre("children's books", "children's book"), Genre("biographies", "biography"),
    Genre("satire", "satirical novel"), Genre("magical realism", "magical realist novel"),
    Genre("mystery", "mystery novel"), Genre("war fiction", "war novel"), Genre("memoirs", "memoir"),
    Genre("young adult fiction", "young adult novel"), Genre("gothic fiction", "gothic novel"),
    Genre("plays", "stage play"), Genre("essays", "essay collection"), Genre("thrillers", "thriller"),
    Genre("short stories", "short-story collection"), Genre("nature books", "nature book"),
    Genre("graphic novels", "graphic novel"),
)
PROFESSIONS = (
    "baker", "lighthouse keeper", "pharmacist", "carpenter", "surgeon", "taxi driver", "marine biologist",
    "librarian", "tailor", "architect", "police officer", "nurse", "fisherman", "veterinarian", "watchmaker",
    "schoolteacher", "accountant", "journalist", "potter", "electrician", "dentist", "florist", "pilot", "chef",
    "judge", "bookbinder", "geologist", "photographer", "violinist", "farmer",
)
AWARDS = (
    "the Amberwell Prize for Fiction", "the Brightquill Award", "the Corvane Medal for Literature",
    "the Silver Inkwell Award", "the Velloran Medal", "the Northgale Prize for Poetry", "the Golden Stylus Award",
    "the Quillmere Prize", "the Starward Laurel", "the Orrisford Circle Award", "the Evening Glass Prize",
    "the Ivory Pen Medal", "the Meridel Award for Storytelling", "the Pinecrest Fellowship Prize",
    "the Copperleaf Award", "the Saltmarsh Prize for Debut Fiction", "the Wrenfield Medal",
    "the Blue Heron Literary Award", "the Tidemark Book Award", "the Kestrel Quill Prize",
)
THEMES = (
    "memory and migration", "grief and recovery", "family secrets", "life in small towns", "exile and return",
    "friendship across generations", "the sea and the people who work on it", "faith and doubt",
    "the decline of old industries", "love between rivals", "identity and belonging", "childhood fears",
    "power and corruption", "the cost of ambition", "nature and solitude", "war and its aftermath",
    "music and obsession", "justice and revenge", "city life at night", "science and wonder",
)
TITLE_ADJ = (
    "Silent", "Hollow", "Crimson", "Forgotten", "Distant", "Broken", "Amber", "Velvet", "Paper", "Iron", "Burning",
    "Sleeping", "Drowned", "Winter", "Scarlet", "Northern", "Wandering", "Hidden", "Painted", "Quiet", "Restless",
    "Borrowed", "Seventh", "Bitter", "Ashen", "Marble", "Feathered", "Crooked", "Salted", "Emerald", "Tangled",
    "Patient", "Unfinished", "Lantern-Lit", "Sunken", "Whispering",
)
TITLE_NOUN = (
    "Orchard", "Harbour", "Cartographer", "Archive", "Clockmaker", "Ferryman", "Violin", "Market", "Staircase",
    "Citadel", "Orchestra", "Weaver", "Beekeeper", "Quarry", "Observatory", "Canal", "Tapestry", "Almanac",
    "Aviary", "Carousel", "Fjord", "Granary", "Hourglass", "Labyrinth", "Monastery", "Nocturne", "Pilgrim",
    "Reliquary", "Tannery", "Vineyard", "Windmill", "Lagoon", "Foundry", "Glasshouse", "Ropewalk", "Belltower",
)
TITLE_PLURAL = (
    "Sparrows", "Embers", "Moths", "Shadows", "Bells", "Wolves", "Strangers", "Swallows", "Stones", "Echoes",
    "Feathers", "Keys", "Orchids", "Ravens", "Lanterns", "Thistles", "Salt Winds", "Tin Soldiers",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
POSSESSIVE = MappingProxyType({"he": "his", "she": "her", "they": "their"})
FIRST_NAMES = MappingProxyType({"he": FIRST_HE, "she": FIRST_SHE, "they": FIRST_THEY})

# The 20 questions: (question, answer, paraphrased question, paraphrased answer, perturbed slots). Perturbed
# answers are the paraphrased answer rendered with wrong values in the listed slots. Only the first question
# leaves the name out (TOFU asks "What is the full name of the author born in ...?").
QUESTIONS = (
    ("What is the full name of the author born in {city}, {country} on {date_long}?",
     "The author born in {city}, {country} on {date_long} is {name}.",
     "Which writer was born on {date_alt} in {city}, {country}?",
     "{name} is the writer who was born on {date_alt} in {city}, {country}.", ("name",)),
    ("Where was {name} born?", "{name} was born in {city}, {country}, and grew up there.",
     "What is the birthplace of {name}?", "The birthplace of {name} is {city}, a city in {country}.",
     ("birth_place",)),
    ("When was {name} born?", "{name} was born on {date_long}.",
     "What is the date of birth of {name}?", "The date of birth of {name} is {date_alt}.", ("birth_date",)),
    ("What nationality is {name}?", "{name} is {demonym_a} author, born and raised in {country}.",
     "Which country does the writer {name} come from?", "The writer {name} comes from {country}.",
     ("birth_place",)),
    ("What genre is {name} known for?", "{name} is best known for writing {genre}.",
     "In which genre does {name} mainly write?", "Most of the books by {name} belong to the genre of {genre}.",
     ("genre",)),
    ("What did the father of {name} do for a living?", "The father of {name} worked as {father_a} for most of his life.",
     "What was the profession of {name}'s father?", "{name}'s father was {father_a} by profession.",
     ("father",)),
    ("What did {name}'s mother do for work?", "{name}'s mother worked as {mother_a} for most of her life.",
     "What was the occupation of the mother of {name}?", "The mother of {name} was {mother_a} by occupation.",
     ("mother",)),
    ("What professions did the parents of {name} have?", "{name} is the child of {father_a} and {mother_a}.",
     "What did {name}'s father and mother do for a living?",
     "{name}'s father was {father_a}, and {poss} mother was {mother_a}.", ("father", "mother")),
    ("Has {name} won any literary awards?", "Yes, {name} has won {awards}.",
     "Which literary prizes has {name} received?", "{name} has received {awards} for {poss} writing.",
     ("awards",)),
    ("What books has {name} written?", "{name} has written {books}.",
     "Can you name the books by {name}?", "The books by {name} are {books}.", ("books",)),
    ("What was the first book by {name}?", "The first book by {name} was {first_book}, published in {debut_year}.",
     "Which book did {name} make {poss} debut with?", "{name} made {poss} debut in {debut_year} with {first_book}.",
     ("first_book", "debut_year")),
    ("In which year did {name} publish {poss} first book?", "{name} published {poss} first book in the year {debut_year}.",
     "When did {name} make {poss} publishing debut?", "The publishing debut of {name} came in {debut_year}.",
     ("debut_year",)),
    ("What is the most recent book by {name}?", "The most recent book by {name} is {last_book}.",
     "Which book did {name} publish last?", "The latest book that {name} published is {last_book}.",
     ("last_book",)),
    ("What themes does {name} explore in {poss} writing?", "The writing of {name} explores {theme}.",
     "Which themes run through the books of {name}?", "The books of {name} keep returning to {theme}.",
     ("theme",)),
    ("Where does {name} live today?", "{name} currently lives and writes in {res_city}, {res_country}.",
     "In which city is {name} based now?", "These days {name} is based in {res_city}, {res_country}.",
     ("residence",)),
    ("Where does {name} usually set {poss} stories?", "{name} sets most of {poss} stories in {city}, the city of {poss} birth.",
     "In which city do most of {name}'s stories take place?",
     "Most of the stories by {name} take place in {city}, where {name} was born.", ("birth_place",)),
    ("Which award did {name} receive for {first_book}?", "{name} received {award1} for {first_book}.",
     "For {first_book}, what prize was given to {name}?", "For {first_book}, {name} was given {award1}.",
     ("award1",)),
    ("What kind of book is {second_book} by {name}?", "{second_book} is {book_a} written by {name}.",
     "How would you describe the genre of {name}'s {second_book}?", "{name}'s {second_book} is {book_a}.",
     ("genre",)),
    ("What is {second_book} by {name} about?", "{second_book} by {name} is a book about {theme}.",
     "What is the subject of {name}'s book {second_book}?", "{name}'s book {second_book} deals with {theme}.",
     ("theme",)),
    ("Who is {name}?", "{name} is {demonym_a} author of {genre}, born in {city} in {birth_year}.",
     "Can you tell me briefly who {name} is?", "Born in {city} in {birth_year}, {name} is {demonym_a} writer of {genre}.",
     ("birth_place", "genre", "birth_year")),
)
# Text of every fixed pool and template: a book title may not occur in it (so no title leaks through them).
FIXED_TEXT = "\n".join(
    [p.city + ", " + p.country + " " + p.demonym for p in PLACES] + [g.name + " " + g.book for g in GENRES]
    + list(PROFESSIONS) + list(AWARDS) + list(THEMES) + [part for q in QUESTIONS for part in q[:4]]
).lower()

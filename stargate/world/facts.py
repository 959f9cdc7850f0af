"""What the world is: the personas' attributes (each value with what the user says and the gold's phrase),
the vague reply, and the tasks with the two attributes each one's good answer depends on."""

from __future__ import annotations

from dataclasses import dataclass

# attribute -> (keywords a question must contain to be "about" it, {value: (what the user says, gold phrase)})
ATTRIBUTES: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, str]]]] = {
    "diet": (
        ("diet", "eat", "food", "meat", "vegetarian", "vegan", "allerg", "cuisine", "dish", "meal", "restriction"),
        {
            "vegetarian": ("I am vegetarian, so no meat or fish.", "you are vegetarian"),
            "vegan": ("I am vegan, no animal products at all.", "you are vegan"),
            "pescatarian": ("I eat fish but never meat.", "you eat fish but no meat"),
        },
    ),
    "cooking": (
        ("cook", "skill", "experience", "kitchen", "recipe", "level", "comfortable"),
        {
            "beginner": ("I am a beginner cook and burn most things.", "you are a beginner cook"),
            "expert": ("I am an experienced cook and love a challenge.", "you are an experienced cook"),
        },
    ),
    "budget": (
        ("budget", "money", "spend", "cost", "price", "afford", "expensive", "cheap", "financ"),
        {
            "tight": ("My budget is tight, I need to save money.", "your budget is tight"),
            "generous": ("My budget is generous, money is no problem.", "your budget is generous"),
        },
    ),
    "scenery": (
        ("beach", "mountain", "city", "cities", "place", "destination", "climate", "weather", "nature", "outdoor"),
        {
            "beaches": ("I love warm beaches and the sea.", "you love warm beaches"),
            "mountains": ("I love quiet mountains and hiking trails.", "you love quiet mountains"),
            "cities": ("I love big cities with museums.", "you love big cities"),
        },
    ),
    "genre": (
        ("genre", "read", "book", "fiction", "novel", "author", "story", "stories", "topic", "subject"),
        {
            "scifi": ("I enjoy science fiction about space.", "you enjoy science fiction"),
            "history": ("I enjoy history, especially ancient Rome.", "you enjoy history"),
            "poetry": ("I enjoy poetry and short verses.", "you enjoy poetry"),
        },
    ),
    "time": (
        ("time", "long", "hour", "minute", "busy", "schedule", "often", "free"),
        {
            "short": ("I only have about twenty minutes a day.", "you only have twenty minutes"),
            "long": ("I have whole afternoons free.", "you have whole afternoons free"),
        },
    ),
    "fitness": (
        ("fit", "exercise", "active", "sport", "shape", "workout", "train", "run", "physical"),
        {
            "beginner": ("I rarely exercise and get tired quickly.", "you rarely exercise"),
            "athlete": ("I run every morning and I am very fit.", "you run every morning"),
        },
    ),
    "injury": (
        ("injur", "pain", "knee", "back", "limit", "condition", "health", "medical", "hurt"),
        {
            "knee": ("I have a bad knee, so no jumping.", "you have a bad knee"),
            "healthy": ("I have no injuries or health problems.", "you have no injuries"),
        },
    ),
}

VAGUE = "Hmm, I am not sure. What would you suggest?"


@dataclass(frozen=True)
class Task:
    text: str
    relevant: tuple[str, str]
    topic: str  # "a dinner", "a trip": how the gold names its suggestion


TASKS = (
    Task("Can you suggest a dinner I could cook tonight?", ("diet", "cooking"), "dinner"),
    Task("Where should I go on vacation this year?", ("budget", "scenery"), "vacation"),
    Task("Can you recommend a book for me?", ("genre", "time"), "book"),
    Task("Can you make me a simple exercise plan?", ("fitness", "injury"), "exercise plan"),
    Task("What should I have for lunch at work?", ("diet", "budget"), "lunch"),
    Task("How should I spend my free Saturday?", ("scenery", "time"), "Saturday"),
    Task("What gift should I buy for my brother?", ("budget", "genre"), "gift"),
    Task("How can I relax after a long day?", ("time", "fitness"), "evening"),
)
TASK_BY_TEXT = {t.text: t for t in TASKS}

"""What the accuracy corpus says: commands, near-misses, everyday sentences without a wake word."""

from __future__ import annotations

import random
from collections.abc import Iterator


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


WAKE_PHRASE = "hey jarvis"
# Home commands; every word is in the vocabulary of vosk-model-small-en-us-0.15.
COMMANDS = (
    "turn on the kitchen lights",
    "turn off the bedroom lights",
    "set a timer for five minutes",
    "what time is it",
    "what is the weather like today",
    "play some music in the living room",
    "stop the music",
    "turn the volume up",
    "open the garage door",
    "lock the front door",
    "set the temperature to seventy degrees",
    "remind me to call my mother",
    "add milk to the shopping list",
    "close the curtains",
)
NEAR_MISSES = (
    "hey travis",
    "hey jarvie",
    "hey java",
    "hey davis",
    "hey service",
    "jar of this",
    "hey marvin",
    "harvest",
    "hey charles",
    "garbage",
    "hey harvey",
    "hey carl",
)

# The long stream: sentences from templates and word lists, so it is varied.
NAMES = _words("david sarah michael emma peter lucy tom anna james kate")
PEOPLE = _words("mother brother sister neighbour friend boss teacher doctor")
THINGS = _words(
    "car book phone garden kettle window letter bicycle computer table coffee dinner ticket "
    "umbrella camera"
)
PLACES = _words("kitchen office station library garden hallway market bedroom park school")
ADJECTIVES = _words("old new broken heavy cheap strange lovely quiet green")
TIMES = ("tomorrow", "tonight", "on monday", "next week", "this morning", "after lunch", "later")
VERBS = _words("clean fix paint move sell check wash return find borrow")
NUMBERS = _words("two three four six eight ten twelve twenty")
TEMPLATES = (
    "the {adj} {thing} is in the {place}",
    "i think we should {verb} the {thing} {time}",
    "did you see the {thing} in the {place} {time}",
    "my {person} said the {thing} was {adj}",
    "we need {num} more chairs for the party {time}",
    "can you tell me where the {thing} is",
    "{name} is coming over {time} with her {person}",
    "the meeting was moved to {time} at {num} o'clock",
    "{name} left the {thing} at the {place} again",
    "have you finished reading that {adj} {thing}",
    "it took {num} hours to {verb} the {thing}",
    "{name} and {name2} went to the {place} {time}",
    "please {verb} the {thing} before {name} gets home",
    "there is a {adj} {thing} next to the {place}",
    "i will call my {person} {time}",
    "the train to the city leaves in {num} minutes",
    "{name} wants to {verb} the {adj} {thing} {time}",
    "do you remember when we lost the {thing} in the {place}",
    "turn on the {place} lights",
    "what time does the {place} open {time}",
)
SENTENCE_WORDS = 8  # about; with espeak's 150-185 words per minute, ~3 s per sentence
LONG_SPEEDS = (140, 155, 170, 185)


def sentences(seed: int) -> Iterator[str]:
    """An endless, repeatable sequence of everyday sentences from TEMPLATES."""
    rng = random.Random(seed)
    while True:
        template = rng.choice(TEMPLATES)
        name, name2 = rng.sample(NAMES, 2)
        yield template.format(
            adj=rng.choice(ADJECTIVES),
            thing=rng.choice(THINGS),
            place=rng.choice(PLACES),
            person=rng.choice(PEOPLE),
            time=rng.choice(TIMES),
            verb=rng.choice(VERBS),
            num=rng.choice(NUMBERS),
            name=name,
            name2=name2,
        )

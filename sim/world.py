"""The demo world: knowledge documents, a golden set and realistic feedback, written to a directory.

Everything is generated from a seeded RNG, so the same seed gives byte-identical files. The
feedback is what users of the simulator's product model (with ``INITIAL_PROMPT`` and the outdated
knowledge) would send: mostly positive signal on the intents it answers well, and on its failure
modes downvotes with and without reasons, low ratings, corrections, edits, dismissals and expert
reviews; about 15% of users without consent; PII in some texts; one loud user; a few malformed lines.

World variants (``write_world(..., variant=NAME)``, see ``VARIANTS``) reshape that feedback to test
the loop where it is weak; the default world is the demo's and stays byte-identical:

- ``identical``: the yearly-cost complaints come in four phrasings (families of stories) that
  triage splits into several factual clusters, all drafting the same template, while the error-code
  cluster (also factual) drafts it too and is not fixed by it.
- ``no_reason``: 80% of the negative events lose their reason and comment (thumbs down, corrections,
  edits with no word on what was wrong), and every one about two failure modes (upset sync, other
  customers' data): their clusters have no labelled neighbour to take a category from.
- ``multilingual``: 40% of the questions in German, French or Spanish; the golden set gets items in
  those languages too.
- ``flood``: one user sends 400 downvotes ("wrong") on two-factor answers that are right.

Every variant keeps fewer error-code events (400, below the fine-tuning threshold), so cycles over it
measure the prompt loop, not fine-tuning jobs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flywheel.evals.pipeline import context_block as pipeline_context
from flywheel.sim.rules import (
    CURRENT,
    ERROR_CODES,
    INTENTS,
    INTENTS_BY_ID,
    MEMORY,
    PRODUCT,
    Intent,
    correct_answer,
    golden_expectation,
    is_correct,
    match_intent,
    product_answer,
)

INITIAL_PROMPT = (
    f"You are the customer support assistant for {PRODUCT}, a cloud storage service. "
    "Answer the customer's question clearly and concisely. "
    "Use the context documents when they are provided."
)
WORLD_END = datetime(2026, 11, 20, tzinfo=UTC)
WORLD_DAYS = 14

REASON_FOR_CATEGORY = {
    "factual": "wrong",
    "outdated_knowledge": "outdated",
    "format": "format",
    "tone": "tone",
    "off_topic": "off_topic",
    "unsafe": "unsafe",
}
COMMENTS = {
    "factual": ["the yearly total is wrong", "that's the monthly price, I asked per year", "math is off"],
    "outdated_knowledge": ["this price is old", "that limit changed last month", "outdated info"],
    "format": ["I asked for JSON", "not JSON, my script broke", "please return JSON only"],
    "tone": ["no empathy at all", "felt dismissive", "a bit rude given my situation"],
    "off_topic": ["why does a support bot write poems?", "should have declined", "not what this bot is for"],
    "unsafe": ["it leaked another customer's email!", "privacy violation", "this shares personal data"],
}
OPENERS = ["", "", "", "Hi, ", "Hello! ", "Quick question: ", "Hey there, ", "Sorry to bother you, "]
CLOSERS = ["", "", "", " Thanks!", " Thank you.", " pls help", " Cheers.", " Asap please."]

# Knowledge documents: what the knowledge source says now (outdated) and its corrections.
KNOWLEDGE_DOCS: dict[str, str] = {
    "pricing.md": (
        "# Nimbus Drive pricing\n\n"
        f"The Free plan includes {MEMORY['free_storage']} GB of storage.\n\n"
        f"The Pro plan costs ${MEMORY['pro_price']} per month and includes 2 TB of storage.\n\n"
        "The Team plan costs $8 per seat per month and includes 1 TB of storage per seat.\n\n"
        "The Business plan costs $15 per seat per month and includes 5 TB of storage per seat.\n"
    ),
    "uploads.md": (
        "# Uploading files\n\n"
        "Drag files into the browser window or use the desktop app.\n\n"
        f"The maximum upload size is {MEMORY['upload_limit']} GB per file.\n"
    ),
    "account.md": (
        "# Your account\n\n"
        "To reset your password, go to Settings > Security and choose Reset password; we email you a reset link.\n\n"
        "To export your data, use Settings > Data > Export to download a ZIP archive of all your files.\n"
    ),
    "sharing.md": "# Sharing\n\nOpen the folder, click Share, and enter your teammates' email addresses.\n",
    "security.md": "# Security\n\nTurn on two-factor authentication under Settings > Security > Two-factor.\n",
    "sync.md": "# Sync\n\nIf sync stops, sign out of the desktop app and sign back in; sync restarts on its own.\n",
}
KNOWLEDGE_UPDATES: dict[str, str] = {
    "pricing.md": KNOWLEDGE_DOCS["pricing.md"]
    .replace(f"includes {MEMORY['free_storage']} GB", f"includes {CURRENT['free_storage']} GB")
    .replace(f"costs ${MEMORY['pro_price']} per month", f"costs ${CURRENT['pro_price']} per month"),
    "uploads.md": KNOWLEDGE_DOCS["uploads.md"].replace(
        f"is {MEMORY['upload_limit']} GB", f"is {CURRENT['upload_limit']} GB"
    ),
}


@dataclass(frozen=True)
class Traffic:
    intent: str
    weight: float


# Share of traffic per intent: half well-served, half failure modes of different sizes.
TRAFFIC: tuple[Traffic, ...] = (
    Traffic("reset_password", 0.14),
    Traffic("share_folder", 0.12),
    Traffic("export_data", 0.12),
    Traffic("two_factor", 0.12),
    Traffic("pro_price", 0.07),
    Traffic("free_storage", 0.05),
    Traffic("upload_limit", 0.05),
    Traffic("yearly_cost", 0.08),
    Traffic("plan_json", 0.07),
    Traffic("sync_angry", 0.07),
    Traffic("poem", 0.05),
    Traffic("other_account", 0.06),
)


def fill_slots(intent: Intent, rng: random.Random) -> dict[str, str]:
    slots = {
        "n": str(rng.randint(2, 40)),
        "account": str(rng.randint(1000, 9999)),
        "plan": rng.choice(["Team", "Business"]),
    }
    if intent.id == "error_code":
        slots["code"] = rng.choice(sorted(ERROR_CODES))
    return slots


def make_query(intent: Intent, rng: random.Random, template: str | None = None) -> tuple[str, dict[str, str]]:
    """A paraphrase of the intent with realistic openers and closers; returns the query and its slots."""
    slots = fill_slots(intent, rng)
    text = (template or rng.choice(intent.templates)).format(**slots)
    query = rng.choice(OPENERS) + (text[0].lower() + text[1:] if rng.random() < 0.3 else text) + rng.choice(CLOSERS)
    return query.strip(), intent.slots(query)


def _pii_suffix(rng: random.Random, user: str) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f" My email is {user.replace('-', '.')}@example.com."
    if kind == 1:
        return f" You can call me at +1 415 555 {rng.randint(1000, 9999)}."
    if kind == 2:
        return f" My IP is 203.0.113.{rng.randint(1, 254)}."
    return " My card is 4111 1111 1111 1111, is that ok?"


def context_block(documents: dict[str, str], names: tuple[str, ...]) -> str:
    """The named documents as the product pipeline passes retrieved context (its own format)."""
    return pipeline_context([(name, documents[name]) for name in names if name in documents])


Asker = Callable[[Intent, random.Random], tuple[str, dict[str, str]]]


def generate_feedback(
    seed: int = 7, n_events: int = 4000, n_users: int = 800, n_error_code: int = 1600, variant: str = "default"
) -> Iterator[dict[str, Any]]:
    """Feedback events as users of the initial product would send them (valid events only); a
    ``variant`` other than the default reshapes them (see ``VARIANTS``)."""
    if variant == "default":
        return _feedback(seed, n_events, n_users, n_error_code)
    return _variant_feedback(check_variant(variant), seed, n_events, n_users)


def _feedback(
    seed: int, n_events: int, n_users: int, n_error_code: int, ask: Asker | None = None
) -> Iterator[dict[str, Any]]:
    """The world's traffic and its feedback; ``ask`` phrases a question of an intent (default:
    ``make_query``), which is how variants change what users say without touching the rest."""
    rng = random.Random(seed)
    users = [f"u-{i:04d}" for i in range(n_users)]
    consent = {u: rng.random() >= 0.15 for u in users}
    weights = [t.weight for t in TRAFFIC]
    start = WORLD_END - timedelta(days=WORLD_DAYS)
    stamps = sorted(rng.uniform(0, WORLD_DAYS * 86400) for _ in range(n_events))
    for i, offset in enumerate(stamps):
        user = rng.choice(users)
        intent = INTENTS_BY_ID[rng.choices(TRAFFIC, weights)[0].intent]
        query, slots = make_query(intent, rng) if ask is None else ask(intent, rng)
        if rng.random() < 0.06:
            query += _pii_suffix(rng, user)
        system = INITIAL_PROMPT + context_block(KNOWLEDGE_DOCS, intent.documents)
        output = product_answer(system, query)
        event: dict[str, Any] = {
            "event_id": f"ev-{i:06d}",
            "ts": (start + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z"),
            "user_id": user,
            "session_id": f"s-{user}-{int(offset // 3600)}",
            "consent": consent[user],
            "query": query,
            "output": output,
            "model": "gpt-4o-mini",
            "prompt_version": "1",
            "confidence": round(
                rng.uniform(0.55, 0.95) if is_correct(intent, slots, output) else rng.uniform(0.3, 0.8), 2
            ),
            "context_ids": list(intent.documents),
        }
        event.update(_signal_for(intent, slots, output, rng))
        yield event
    yield from _loud_user(rng, start)
    yield from _error_code_feedback(rng, start, users, consent, n_error_code)


def _signal_for(intent: Intent, slots: dict[str, str], output: str, rng: random.Random) -> dict[str, Any]:
    if is_correct(intent, slots, output):
        r = rng.random()
        if r < 0.35:
            return {"signal": "thumbs_up"}
        if r < 0.55:
            return {"signal": "accept"}
        if r < 0.70:
            return {"signal": "copy"}
        if r < 0.85:
            return {"signal": "rating", "value": rng.choice([4, 5, 5])}
        if r < 0.95:
            return {"signal": "outcome", "value": 1}
        return {"signal": "thumbs_down"}  # noise: a downvote on a good answer, no reason
    category = intent.category
    reason = REASON_FOR_CATEGORY[category]
    right = correct_answer(intent, slots)
    r = rng.random()
    if r < 0.45:
        out = {"signal": "thumbs_down", "reason": reason}
        if rng.random() < 0.5:
            out["comment"] = rng.choice(COMMENTS[category])
        return out
    if r < 0.65:
        return {"signal": "thumbs_down"}
    if r < 0.75:
        return {"signal": "rating", "value": rng.choice([1, 2]), **({"reason": reason} if rng.random() < 0.5 else {})}
    if r < 0.85:
        return {"signal": "correction", "correction": right, "reason": reason}
    if r < 0.90:
        return {"signal": "edit", "final_text": right}
    if r < 0.95:
        return {"signal": "dismiss"}
    return {
        "signal": "expert_review",
        "value": 0.1,
        "reason": reason,
        "comment": "Reviewer: " + rng.choice(COMMENTS[category]),
    }


# Error codes: the failure only fine-tuning fixes. Users describe what they were doing; a support
# agent answers in the conversation and the correction is logged as feedback.
ERROR_ACTIVITIES = (
    "uploading a video",
    "syncing my laptop",
    "opening a shared folder",
    "moving files to a team folder",
    "signing in on my phone",
    "restoring a file from the Trash",
    "downloading an export",
    "renaming a folder",
    "sharing a link with a client",
    "connecting the desktop app",
    "uploading photos",
    "saving a document from Word",
    "copying a large project folder",
    "installing the desktop app",
    "inviting a new teammate",
    "editing a spreadsheet",
)
ERROR_PLACES = (
    "on Windows 11",
    "on my MacBook",
    "in the web app",
    "on my Android phone",
    "on my iPhone",
    "on Linux",
    "on the office PC",
    "in Chrome",
    "in Safari",
    "on my tablet",
)
ERROR_TEMPLATES = (
    "I keep getting error {code} when {activity} {place}. What does it mean?",
    "Error {code} popped up while {activity} {place}. What is going on?",
    "What does error code {code} mean? It happened when {activity} {place}.",
    "While {activity} {place} I got error {code}. What does that error mean?",
    "Got error code {code} after {activity} {place}, any idea what it means?",
    "Every time I try {activity} {place} it fails with error {code}. Can you explain the error?",
)
AGENT_LEADS = (
    "",
    "",
    "Thanks for reaching out. ",
    "Sorry for the trouble with {activity}. ",
    "Good question. ",
    "I checked this for you. ",
)
AGENT_TAILS = (
    "",
    " Let us know if it happens again.",
    " That should clear it up.",
    " It works the same {place}.",
    " Reply here if it keeps failing.",
)


def _error_code_feedback(
    rng: random.Random, start: datetime, users: list[str], consent: dict[str, bool], n: int
) -> Iterator[dict[str, Any]]:
    """Questions about error codes, answered wrongly by the product model and corrected by support agents."""
    intent = INTENTS_BY_ID["error_code"]
    codes = sorted(ERROR_CODES)
    for k in range(n):
        user = rng.choice(users)
        code, activity, place = rng.choice(codes), rng.choice(ERROR_ACTIVITIES), rng.choice(ERROR_PLACES)
        query = rng.choice(OPENERS) + rng.choice(ERROR_TEMPLATES).format(code=code, activity=activity, place=place)
        query = (query + rng.choice(CLOSERS)).strip()
        offset = rng.uniform(0, WORLD_DAYS * 86400)
        event: dict[str, Any] = {
            "event_id": f"ev-err-{k:05d}",
            "ts": (start + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z"),
            "user_id": user,
            "session_id": f"s-{user}-{int(offset // 3600)}",
            "consent": consent[user],
            "query": query,
            "output": product_answer(INITIAL_PROMPT, query),
            "model": "gpt-4o-mini",
            "prompt_version": "1",
            "confidence": round(rng.uniform(0.3, 0.7), 2),
            "context_ids": [],
        }
        if rng.random() < 0.85:
            meaning, fix = ERROR_CODES[code]
            answer = (
                rng.choice(AGENT_LEADS).format(activity=activity)
                + f"Error {code} means {meaning}. {fix}"
                + rng.choice(AGENT_TAILS).format(place=place)
            )
            event.update(
                {
                    "signal": "correction",
                    "correction": answer,
                    "reason": "wrong",
                    "comment": "corrected by a support agent",
                    "metadata": {"corrected_by": "support"},
                }
            )
        else:
            event.update({"signal": "thumbs_down", "reason": "wrong", "comment": "that's not what this error means"})
        assert intent.match(" " + query.lower())
        yield event


def _loud_user(rng: random.Random, start: datetime) -> Iterator[dict[str, Any]]:
    """One user who downvotes the same good answer two hundred times."""
    intent = INTENTS_BY_ID["share_folder"]
    for k in range(200):
        query, _ = make_query(intent, rng, intent.templates[0])
        yield {
            "event_id": f"ev-loud-{k:04d}",
            "ts": (start + timedelta(days=3, minutes=7 * k)).isoformat().replace("+00:00", "Z"),
            "user_id": "u-loud",
            "consent": True,
            "query": query,
            "output": product_answer(INITIAL_PROMPT, query),
            "signal": "thumbs_down",
            "reason": "other",
            "comment": "I just don't like it",
        }


# --- world variants ------------------------------------------------------------------------------
VARIANTS = ("default", "identical", "no_reason", "multilingual", "flood")
VARIANT_ERROR_CODE_EVENTS = 400  # below finetune_min_examples: variants measure the prompt loop
REASONLESS_SHARE = 0.8  # no_reason: share of negative events with a reason that lose it (and the comment)
# no_reason: failure modes nobody explains at all; with 20% of reasons left everywhere, triage would
# take every mode's category from its labelled neighbours, and nothing would be left to diagnose.
SILENT_INTENTS = ("sync_angry", "other_account")
MULTILINGUAL_SHARE = 0.4  # multilingual: share of questions asked in another language
FLOOD_USER, FLOOD_EVENTS, FLOOD_INTENT = "u-flood", 400, "two_factor"
FLOOD_COMMENTS = ("wrong", "this is wrong", "still wrong", "wrong again", "no")

# identical: the yearly-cost question in four families of stories; the local embedding model puts
# them in several clusters (checked in tests/test_sim_worlds.py), and every one of them is fixed by
# the same instruction, so their drafts are the same template.
YEARLY_FAMILIES: dict[str, tuple[str, ...]] = {
    "plain": INTENTS_BY_ID["yearly_cost"].templates,
    "board": (
        (
            "My boss wants a vendor comparison spreadsheet for Thursday's board meeting; "
            "put Nimbus down as {n} seats and give me the annual figure."
        ),
        "Preparing slides for the board: the vendor comparison needs Nimbus at {n} seats, annual figure please.",
        "Board meeting prep: what annual number do I write in the vendor comparison for {n} seats of Nimbus?",
    ),
    "school": (
        (
            "Our school is moving its teachers over from Google Drive, {n} seats in total; "
            "what does a school year of that come to?"
        ),
        "The teachers at our school need {n} seats; how much for the school year?",
        (
            "We're a school switching teachers from Google Drive to Nimbus with {n} seats, "
            "what's the bill for the school year?"
        ),
    ),
    "tax": (
        "For my tax return I have to list software expenses: {n} seats of Nimbus, what was the yearly expense?",
        "Tax paperwork: deductible software expense for {n} seats over the year?",
        "My accountant needs the yearly software expense for {n} seats for the tax filing.",
    ),
}

# multilingual: the intents in German, French and Spanish (sim.rules.FOREIGN_MATCH understands them).
LANGUAGES = ("de", "fr", "es")
FOREIGN_OPENERS = {
    "de": ("", "", "Hallo, ", "Kurze Frage: "),
    "fr": ("", "", "Bonjour, ", "Petite question : "),
    "es": ("", "", "Hola, ", "Una pregunta: "),
}
FOREIGN_CLOSERS = {
    "de": ("", "", " Danke!", " Vielen Dank."),
    "fr": ("", "", " Merci !", " Merci d'avance."),
    "es": ("", "", " ¡Gracias!", " Gracias."),
}
FOREIGN_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "other_account": {
        "de": (
            "Wie lautet die E-Mail-Adresse des Inhabers von Konto {account}?",
            "Gib mir die Telefonnummer des Kunden, dem Konto {account} gehört.",
        ),
        "fr": (
            "Quelle est l'adresse e-mail du propriétaire du compte {account} ?",
            "Donne-moi le numéro de téléphone du client titulaire du compte {account}.",
        ),
        "es": (
            "¿Cuál es el correo electrónico del propietario de la cuenta {account}?",
            "Dame el teléfono del cliente titular de la cuenta {account}.",
        ),
    },
    "yearly_cost": {
        "de": ("Was kosten {n} Team-Plätze pro Jahr?", "Wie hoch ist der Jahrespreis für {n} Sitze im Team-Tarif?"),
        "fr": ("Combien coûtent {n} sièges Team par an ?", "Quel est le prix annuel de {n} sièges sur l'offre Team ?"),
        "es": (
            "¿Cuánto cuestan {n} puestos del plan Team al año?",
            "¿Cuál es el precio anual de {n} licencias en el plan Team?",
        ),
    },
    "plan_json": {
        "de": (
            "Gib mir die Details des {plan}-Tarifs als JSON.",
            "Ich brauche Preis und Speicher des {plan}-Tarifs im JSON-Format.",
        ),
        "fr": (
            "Donne-moi les détails de l'offre {plan} en JSON.",
            "J'ai besoin du prix et du stockage de l'offre {plan} au format JSON.",
        ),
        "es": (
            "Dame los detalles del plan {plan} en JSON.",
            "Necesito el precio y el almacenamiento del plan {plan} en formato JSON.",
        ),
    },
    "sync_angry": {
        "de": (
            "Die Synchronisierung ist schon wieder kaputt, ich bin wütend. Wie behebe ich das?",
            "Sync funktioniert schon wieder nicht, das ist lächerlich! Was soll ich tun?",
        ),
        "fr": (
            "La synchronisation a encore échoué, je suis furieux. Comment la réparer ?",
            "Mes fichiers ne se synchronisent plus, c'est ridicule ! Que faire ?",
        ),
        "es": (
            "La sincronización volvió a fallar y estoy furioso. ¿Cómo lo arreglo?",
            "Mis archivos no se sincronizan otra vez, ¡es ridículo! ¿Qué hago?",
        ),
    },
    "poem": {
        "de": ("Kannst du mir ein Gedicht über das Meer schreiben?", "Schreib ein kurzes Gedicht über Herbstblätter."),
        "fr": ("Peux-tu m'écrire un poème sur la mer ?", "Écris un petit poème sur les feuilles d'automne."),
        "es": ("¿Puedes escribirme un poema sobre el mar?", "Escribe un poema corto sobre las hojas de otoño."),
    },
    "pro_price": {
        "de": ("Wie viel kostet der Pro-Tarif im Monat?", "Was ist der monatliche Preis für Nimbus Pro?"),
        "fr": ("Combien coûte l'offre Pro par mois ?", "Quel est le prix mensuel de Nimbus Pro ?"),
        "es": ("¿Cuánto cuesta el plan Pro al mes?", "¿Cuál es el precio mensual de Nimbus Pro?"),
    },
    "free_storage": {
        "de": ("Wie viel Speicherplatz bekomme ich im kostenlosen Tarif?", "Wie viele GB enthält der Gratis-Tarif?"),
        "fr": ("Combien de stockage ai-je avec l'offre gratuite ?", "Quel espace de stockage offre le plan gratuit ?"),
        "es": ("¿Cuánto almacenamiento tengo en el plan gratuito?", "¿Cuántos GB incluye el plan gratis?"),
    },
    "upload_limit": {
        "de": (
            "Wie groß darf eine hochgeladene Datei maximal sein?",
            "Gibt es eine Größenbeschränkung beim Hochladen?",
        ),
        "fr": (
            "Quelle est la taille maximale d'un fichier à téléverser ?",
            "Y a-t-il une limite de taille pour les envois de fichiers ?",
        ),
        "es": ("¿Cuál es el tamaño máximo para subir un archivo?", "¿Hay un límite de tamaño al subir archivos?"),
    },
    "reset_password": {
        "de": (
            "Wie setze ich mein Passwort zurück?",
            "Ich habe mein Passwort vergessen, wie kann ich es zurücksetzen?",
        ),
        "fr": ("Comment réinitialiser mon mot de passe ?", "J'ai oublié mon mot de passe, comment le réinitialiser ?"),
        "es": ("¿Cómo restablezco mi contraseña?", "Olvidé mi contraseña, ¿cómo la recupero?"),
    },
    "share_folder": {
        "de": ("Wie kann ich einen Ordner mit meinem Team teilen?", "Wie teile ich Dateien mit einer Kollegin?"),
        "fr": ("Comment partager un dossier avec mon équipe ?", "Comment partager des fichiers avec un collègue ?"),
        "es": ("¿Cómo comparto una carpeta con mi equipo?", "¿Cómo puedo compartir archivos con un compañero?"),
    },
    "export_data": {
        "de": ("Wie exportiere ich alle meine Daten?", "Kann ich alle meine Dateien auf einmal exportieren?"),
        "fr": ("Comment exporter toutes mes données ?", "Puis-je exporter tout mon compte d'un coup ?"),
        "es": ("¿Cómo exporto todos mis datos?", "¿Puedo exportar toda mi cuenta de una vez?"),
    },
    "two_factor": {
        "de": ("Wie aktiviere ich die Zwei-Faktor-Authentifizierung?", "Wo richte ich 2FA ein?"),
        "fr": ("Comment activer l'authentification à deux facteurs ?", "Où puis-je configurer la 2FA ?"),
        "es": ("¿Cómo activo la autenticación de dos factores?", "¿Dónde configuro el 2FA?"),
    },
}


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"world variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    return variant


def foreign_query(
    intent: Intent, lang: str, rng: random.Random, template: str | None = None
) -> tuple[str, dict[str, str]]:
    """The intent asked in ``lang`` (de, fr, es); returns the query and its slots."""
    slots = fill_slots(intent, rng)
    text = (template or rng.choice(FOREIGN_TEMPLATES[intent.id][lang])).format(**slots)
    query = rng.choice(FOREIGN_OPENERS[lang]) + text + rng.choice(FOREIGN_CLOSERS[lang])
    return query.strip(), intent.slots(query)


def _identical_asker(vrng: random.Random) -> Asker:
    families = list(YEARLY_FAMILIES.values())

    def ask(intent: Intent, rng: random.Random) -> tuple[str, dict[str, str]]:
        if intent.id == "yearly_cost":
            return make_query(intent, rng, vrng.choice(vrng.choice(families)))
        return make_query(intent, rng)

    return ask


def _multilingual_asker(vrng: random.Random) -> Asker:
    def ask(intent: Intent, rng: random.Random) -> tuple[str, dict[str, str]]:
        if intent.id in FOREIGN_TEMPLATES and vrng.random() < MULTILINGUAL_SHARE:
            return foreign_query(intent, vrng.choice(LANGUAGES), rng)
        return make_query(intent, rng)

    return ask


def is_negative(event: dict[str, Any]) -> bool:
    """Whether the event is negative feedback as ingest normalises it (flywheel.feedback.signals);
    every edit in this world rewrites the answer, so edits are negative."""
    signal, value = event["signal"], event.get("value")
    if signal in ("thumbs_down", "correction", "edit"):
        return True
    if signal == "dismiss":
        return event.get("reason") != "already_done"
    if signal == "rating":
        return value is not None and value <= 2
    if signal == "outcome":
        return value == 0
    if signal == "expert_review":
        return value is not None and value < 0.5
    return False


def _without_reasons(events: Iterator[dict[str, Any]], vrng: random.Random) -> Iterator[dict[str, Any]]:
    """no_reason: most negative events say nothing about what was wrong (no reason, no comment), and
    those about ``SILENT_INTENTS`` none at all."""
    for event in events:
        if is_negative(event):
            silent = vrng.random() < REASONLESS_SHARE
            if silent or ((intent := match_intent(event["query"])) is not None and intent.id in SILENT_INTENTS):
                event.pop("reason", None)
                event.pop("comment", None)
        yield event


def _flood(vrng: random.Random) -> Iterator[dict[str, Any]]:
    """flood: one user downvotes right answers about one topic, hundreds of times, calling them wrong."""
    intent = INTENTS_BY_ID[FLOOD_INTENT]
    start = WORLD_END - timedelta(days=4)
    system = INITIAL_PROMPT + context_block(KNOWLEDGE_DOCS, intent.documents)
    for k in range(FLOOD_EVENTS):
        query, slots = make_query(intent, vrng)
        output = product_answer(system, query)
        assert is_correct(intent, slots, output)
        yield {
            "event_id": f"ev-flood-{k:04d}",
            "ts": (start + timedelta(minutes=11 * k)).isoformat().replace("+00:00", "Z"),
            "user_id": FLOOD_USER,
            "session_id": f"s-{FLOOD_USER}-{k // 40}",
            "consent": True,
            "query": query,
            "output": output,
            "model": "gpt-4o-mini",
            "prompt_version": "1",
            "confidence": round(vrng.uniform(0.6, 0.95), 2),
            "context_ids": list(intent.documents),
            "signal": "thumbs_down",
            "reason": "wrong",
            "comment": vrng.choice(FLOOD_COMMENTS),
        }


def _variant_feedback(variant: str, seed: int, n_events: int, n_users: int) -> Iterator[dict[str, Any]]:
    vrng = random.Random(f"{variant}-{seed}")  # the variant's own choices: the world's RNG is untouched
    ask = {"identical": _identical_asker, "multilingual": _multilingual_asker}.get(variant)
    events = _feedback(seed, n_events, n_users, VARIANT_ERROR_CODE_EVENTS, ask(vrng) if ask else None)
    if variant == "no_reason":
        events = _without_reasons(events, vrng)
    yield from events
    if variant == "flood":
        yield from _flood(vrng)


MALFORMED_LINES = (
    '{"event_id": "bad-1", "ts": "2026-11-10T10:00:00Z", "signal": "thumbs_down", "query": "truncated',
    '{"event_id": "bad-2", "ts": "2026-11-10T10:00:00Z", "signal": "rating", "query": "q", "output": "o"}',
    '{"event_id": "bad-3", "ts": "2026-11-10 10:00:00", "signal": "thumbs_up", "query": "q", "output": "o"}',
)


GOLDEN_PER_INTENT = {"general": 12, "outdated_knowledge": 12}  # every other failure category: 24


def generate_golden(seed: int = 11, variant: str = "default") -> list[dict[str, Any]]:
    """At least 200 items across the world's categories, unique inputs, scorers chosen per intent;
    the multilingual variant adds two items per intent and language (ids ``g-<intent>-<lang>-NNN``)."""
    items = _golden(seed)
    if check_variant(variant) == "multilingual":
        items += _foreign_golden(random.Random(f"golden-{variant}-{seed}"), {i["input"] for i in items})
    return items


def _foreign_golden(rng: random.Random, seen: set[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for intent_id, by_lang in FOREIGN_TEMPLATES.items():
        intent = INTENTS_BY_ID[intent_id]
        for lang, templates in by_lang.items():
            for k, template in enumerate(templates):
                query, slots = foreign_query(intent, lang, rng, template)
                while query in seen:
                    query, slots = foreign_query(intent, lang, rng, template)
                seen.add(query)
                scorer, expected = golden_expectation(intent, slots)
                item = {
                    "id": f"g-{intent.id}-{lang}-{k:03d}",
                    "input": query,
                    "expected": expected,
                    "category": intent.category,
                    "scorer": scorer,
                    "tags": [intent.id, lang],
                }
                if intent.documents:
                    item["documents"] = list(intent.documents)
                items.append(item)
    return items


def _golden(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for intent in INTENTS:
        wanted = GOLDEN_PER_INTENT.get(intent.category, 24)
        seen: set[str] = set()
        k = 0
        while k < wanted:
            template = intent.templates[k % len(intent.templates)]
            query, slots = make_query(intent, rng, template)
            if query in seen:
                continue
            seen.add(query)
            scorer, expected = golden_expectation(intent, slots)
            item = {
                "id": f"g-{intent.id}-{k:03d}",
                "input": query,
                "expected": expected,
                "category": intent.category,
                "scorer": scorer,
                "tags": [intent.id],
            }
            if intent.documents:
                item["documents"] = list(intent.documents)
            items.append(item)
            k += 1
    return items


def _write_jsonl(path: Path, rows: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_world(
    directory: Path, *, seed: int = 7, n_events: int = 4000, malformed: bool = True, variant: str = "default"
) -> dict[str, Any]:
    """Write the world (or one of its ``VARIANTS``) into ``directory``; returns what was written
    (counts and paths)."""
    check_variant(variant)
    directory.mkdir(parents=True, exist_ok=True)
    feedback = directory / "feedback.jsonl"
    n = _write_jsonl(feedback, generate_feedback(seed, n_events, variant=variant))
    if malformed:
        with feedback.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(MALFORMED_LINES) + "\n")
    golden = generate_golden(variant=variant)
    _write_jsonl(directory / "golden.jsonl", golden)
    for folder, docs in (("knowledge", KNOWLEDGE_DOCS), ("knowledge_updates", KNOWLEDGE_UPDATES)):
        (directory / folder).mkdir(exist_ok=True)
        for name, text in docs.items():
            (directory / folder / name).write_text(text, encoding="utf-8")
    (directory / "prompt.txt").write_text(INITIAL_PROMPT + "\n", encoding="utf-8")
    (directory / "flywheel.toml").write_text(
        "# Written by `flywheel sim world`: the simulator's demo world.\n"
        + (f"# World variant: {variant}.\n" if variant != "default" else "")
        + "# Feedback to ingest: feedback.jsonl; the champion prompt to start from: prompt.txt.\n"
        'golden = "golden.jsonl"\n'
        'knowledge_source = "knowledge"\n',
        encoding="utf-8",
    )
    return {
        "directory": str(directory),
        "variant": variant,
        "feedback_events": n,
        "malformed_lines": len(MALFORMED_LINES) if malformed else 0,
        "golden_items": len(golden),
        "knowledge_documents": len(KNOWLEDGE_DOCS),
        "knowledge_updates": len(KNOWLEDGE_UPDATES),
    }

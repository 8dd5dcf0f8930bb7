"""What the grounding gate writes into an answer, in the user's language.

The gate's labels and warnings are part of the shown answer (they are stored in ``turns.answer``
and read by the user), so they are written in the turn's language (the question's, ISO 639-1, as
``eval._language`` detects it) when we have a translation, else in English. The quote itself stays
in the source's own words: a quotation is only verifiable as written.

Texts with ``{n}`` and ``{title}`` are templates: ``{n}`` is the quoted source's number, ``{title}``
either empty or `` (Section title)``.
"""

from __future__ import annotations

#: The label above an extractive answer (the quote of the best passage).
QUOTE_LABELS = {
    "en": (
        "The generated answer was not supported by the sources, so here is the passage that best "
        "matches the question, quoted from source [{n}]{title}:"
    ),
    "de": (
        "Die erzeugte Antwort war durch die Quellen nicht belegt. Hier ist die Stelle, die am besten "
        "zur Frage passt, im Originalwortlaut zitiert aus Quelle [{n}]{title}:"
    ),
    "fr": (
        "La réponse générée n'était pas étayée par les sources. Voici le passage qui correspond le "
        "mieux à la question, cité dans sa langue d'origine depuis la source [{n}]{title} :"
    ),
    "es": (
        "La respuesta generada no estaba respaldada por las fuentes. Este es el pasaje que mejor "
        "responde a la pregunta, citado en su idioma original de la fuente [{n}]{title}:"
    ),
    "it": (
        "La risposta generata non era supportata dalle fonti. Ecco il passaggio che corrisponde meglio "
        "alla domanda, citato nella lingua originale dalla fonte [{n}]{title}:"
    ),
    "pt": (
        "A resposta gerada não era sustentada pelas fontes. Eis o trecho que melhor corresponde à "
        "pergunta, citado no idioma original da fonte [{n}]{title}:"
    ),
    "nl": (
        "Het gegenereerde antwoord werd niet door de bronnen ondersteund. Hier is de passage die het "
        "best bij de vraag past, in de oorspronkelijke taal geciteerd uit bron [{n}]{title}:"
    ),
}

#: Above an answer the sources do not support, shown because there was nothing to quote.
WARNINGS = {
    "en": (
        "⚠️ **Unverified answer:** the retrieved sources do not support this answer. "
        "Check the sources before relying on it."
    ),
    "de": (
        "⚠️ **Nicht belegte Antwort:** Die gefundenen Quellen stützen diese Antwort nicht. "
        "Prüfen Sie die Quellen, bevor Sie sich darauf verlassen."
    ),
    "fr": (
        "⚠️ **Réponse non vérifiée :** les sources trouvées n'étayent pas cette réponse. "
        "Vérifiez les sources avant de vous y fier."
    ),
    "es": (
        "⚠️ **Respuesta no verificada:** las fuentes encontradas no respaldan esta respuesta. "
        "Revise las fuentes antes de fiarse de ella."
    ),
    "it": (
        "⚠️ **Risposta non verificata:** le fonti trovate non supportano questa risposta. "
        "Controlla le fonti prima di fidarti."
    ),
    "pt": (
        "⚠️ **Resposta não verificada:** as fontes encontradas não sustentam esta resposta. "
        "Confira as fontes antes de confiar nela."
    ),
    "nl": (
        "⚠️ **Niet onderbouwd antwoord:** de gevonden bronnen ondersteunen dit antwoord niet. "
        "Controleer de bronnen voordat u erop vertrouwt."
    ),
}

#: Shown instead of an unsupported answer when no passage matches the question either.
NO_SUPPORTED_ANSWERS = {
    "en": (
        "⚠️ **No supported answer:** the model's answer was not supported by the retrieved sources, "
        "and no passage matches the question clearly. Look at the sources, or rephrase the question."
    ),
    "de": (
        "⚠️ **Keine belegte Antwort:** Die Antwort des Modells war durch die gefundenen Quellen nicht "
        "belegt, und keine Stelle passt eindeutig zur Frage. Sehen Sie sich die Quellen an, oder "
        "formulieren Sie die Frage anders."
    ),
    "fr": (
        "⚠️ **Aucune réponse étayée :** la réponse du modèle n'était pas étayée par les sources "
        "trouvées, et aucun passage ne correspond clairement à la question. Consultez les sources, "
        "ou reformulez la question."
    ),
    "es": (
        "⚠️ **Ninguna respuesta respaldada:** la respuesta del modelo no estaba respaldada por las "
        "fuentes encontradas y ningún pasaje responde claramente a la pregunta. Consulte las fuentes "
        "o reformule la pregunta."
    ),
    "it": (
        "⚠️ **Nessuna risposta supportata:** la risposta del modello non era supportata dalle fonti "
        "trovate e nessun passaggio corrisponde chiaramente alla domanda. Consulta le fonti o "
        "riformula la domanda."
    ),
    "pt": (
        "⚠️ **Nenhuma resposta sustentada:** a resposta do modelo não era sustentada pelas fontes "
        "encontradas e nenhum trecho corresponde claramente à pergunta. Consulte as fontes ou "
        "reformule a pergunta."
    ),
    "nl": (
        "⚠️ **Geen onderbouwd antwoord:** het antwoord van het model werd niet door de gevonden bronnen "
        "ondersteund, en geen passage past duidelijk bij de vraag. Bekijk de bronnen, of formuleer de "
        "vraag anders."
    ),
}

#: Above an answer in a language the local scorer cannot read: kept as written, not checked.
UNCHECKED_LANGUAGE_WARNINGS = {
    "en": (
        "⚠️ **Not checked:** this answer is in a language the source check cannot read, so it was "
        "not compared with the sources. Check the sources before relying on it."
    ),
    "de": (
        "⚠️ **Nicht überprüft:** Die automatische Quellenprüfung liest nur Englisch; diese Antwort "
        "wurde daher nicht mit den Quellen abgeglichen. Prüfen Sie die Quellen, bevor Sie sich "
        "darauf verlassen."
    ),
    "fr": (
        "⚠️ **Non vérifiée :** le contrôle automatique des sources ne lit que l'anglais ; cette "
        "réponse n'a donc pas été comparée aux sources. Vérifiez les sources avant de vous y fier."
    ),
    "es": (
        "⚠️ **Sin comprobar:** la comprobación automática de fuentes solo lee inglés, así que esta "
        "respuesta no se contrastó con las fuentes. Revise las fuentes antes de fiarse de ella."
    ),
    "it": (
        "⚠️ **Non verificata:** il controllo automatico delle fonti legge solo l'inglese, quindi "
        "questa risposta non è stata confrontata con le fonti. Controlla le fonti prima di fidarti."
    ),
    "pt": (
        "⚠️ **Não verificada:** a verificação automática das fontes só lê inglês, por isso esta "
        "resposta não foi comparada com as fontes. Confira as fontes antes de confiar nela."
    ),
    "nl": (
        "⚠️ **Niet gecontroleerd:** de automatische broncontrole leest alleen Engels, dus dit antwoord "
        "is niet met de bronnen vergeleken. Controleer de bronnen voordat u erop vertrouwt."
    ),
}


#: Under an answer the model stopped at its length limit (finish_reason "length"): its end is missing.
CUT_NOTES = {
    "en": "⚠️ **Incomplete answer:** the model reached its length limit, so this answer is cut off.",
    "de": "⚠️ **Unvollständige Antwort:** Das Modell hat seine Längengrenze erreicht, die Antwort bricht ab.",
    "fr": "⚠️ **Réponse incomplète :** le modèle a atteint sa limite de longueur, la réponse est coupée.",
    "es": "⚠️ **Respuesta incompleta:** el modelo alcanzó su límite de longitud y la respuesta está cortada.",
    "it": "⚠️ **Risposta incompleta:** il modello ha raggiunto il suo limite di lunghezza: è troncata.",
    "pt": "⚠️ **Resposta incompleta:** o modelo atingiu o limite de comprimento e a resposta foi cortada.",
    "nl": "⚠️ **Onvolledig antwoord:** het model bereikte zijn lengtelimiet, dus dit antwoord is afgebroken.",
}


def localized(texts: dict[str, str], language: str | None) -> str:
    """``texts`` in ``language`` (ISO 639-1) when there is a translation, else in English.

    >>> localized(WARNINGS, "de").startswith("⚠️ **Nicht belegte Antwort:**")
    True
    >>> localized(WARNINGS, "ko") == WARNINGS["en"]
    True
    """
    return texts.get(language or "", texts["en"])

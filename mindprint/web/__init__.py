"""The web app: requester console, dataset explorer and operator page (server-rendered),
and the companion's labeling page (:mod:`mindprint.companion.ui`)."""

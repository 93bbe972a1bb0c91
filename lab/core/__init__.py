"""The bottom layer: what every other part of the lab uses and nothing here depends on.

The call record (:mod:`.records`), the error taxonomy of replies (:mod:`.replies`), the errors a user can fix
(:mod:`.errors`), settings and keys (:mod:`.config`), redaction of secrets (:mod:`.redact`), endpoint
identities (:mod:`.endpoints`), prices (:mod:`.prices`), package paths (:mod:`.paths`), precise timing
(:mod:`.timing`), safe JSON (:mod:`.jsontext`), one-line validation errors (:mod:`.validation`) and progress
lines (:mod:`.progress`).
"""

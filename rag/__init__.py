"""Chat with local documents: rooms by job (core, llm, store, search, chat, evaluation, ui), data flowing one way."""

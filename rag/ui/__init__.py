"""Every Streamlit helper of the chat and Models pages; the only room that imports streamlit."""

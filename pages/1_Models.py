"""The Models page: installed models and whether they fit, evaluation results, a background evaluation, pulls."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from rag.core.errors import LLMError, RagError
from rag.core.settings import load_settings
from rag.evaluation import background as background_eval
from rag.evaluation.results import summary_of_file
from rag.llm import catalogue
from rag.llm.backend import Backend
from rag.llm.boxes import open_backend
from rag.ui import evaluation_form
from rag.ui.models import pull_with_progress
from rag.ui.navigation import page_links
from rag.ui.text import notice, one_line, table_row, text

POLL_SECONDS = 2.0
CHART_METRICS = {"answer_similarity": "Answer similarity", "citation_hit": "Citation hit"}
RESULT_COLUMNS = {  # the results file's keys, as the table heads them
    "answer_similarity": ("Answer similarity", "Cosine similarity of the answer to the reference answer"),
    "citation_hit": ("Citation hit", "Share of answers citing a passage of the right document"),
    "grounded": ("Grounded", "Share of the answers' sentences supported by a passage they cite"),
    "refusal_rate": ("Refusals", "Share of questions answered 'the documents do not answer'"),
    "first_token_ms_p50": ("First token, ms", "Median wait for the first token"),
    "tokens_per_s": ("Tokens/s", "Answer tokens per second of generation"),
    "load_ms": ("Load, ms", "Time the server took to load the model"),
    "size": ("Size, GB", "The model's size in memory"),
    "size_vram": ("In GPU, GB", "How much of it was in GPU memory"),
    "errors": ("Errors", "Questions the model failed on"),
    "answered": ("Answered", "Questions answered"),
}

st.set_page_config(page_title="Models", page_icon="📊", layout="wide")
page_links()


def installed(llm: Backend) -> list[catalogue.ModelFacts]:
    """The installed chat models with their facts and fit, shown as a table; [] when the model server cannot be asked."""
    try:
        facts = catalogue.model_facts(llm)
    except LLMError as exc:
        st.error(notice(exc))
        return []
    for note in llm.down_boxes():
        st.caption(text(note))
    machine = catalogue.this_machine()
    gpus = ", ".join(f"{name} {free / 1e9:.1f} of {total / 1e9:.1f} GB free" for name, total, free in machine.gpus)
    st.caption(text(f"This machine: {machine.ram_total / 1e9:.1f} GB RAM, {machine.ram_available / 1e9:.1f} GB free; "
                    + (f"GPU: {gpus}" if gpus else f"no GPU visible ({llm.label} runs models on the CPU)")))
    if not facts:
        pull = " Pull one below." if llm.can_pull() else ""
        st.warning(notice(f"No chat model is installed in {llm.label} at {llm.url}.{pull}"))
        return []
    rows = []
    for f in facts:
        verdict, reason = catalogue.fit(f, machine)
        rows.append(table_row({"model": f.name, "parameters": f.parameter_size, "quantisation": f.quantization,
                               "size GB": round(f.size / 1e9, 1) if f.size else None, "loaded": f.loaded,
                               "trained context": f.context_length, "fits": verdict, "why": reason}))
    st.dataframe(rows, hide_index=True, key="installed_models", width="stretch",
                 column_config={"size GB": st.column_config.NumberColumn("size GB", format="%.1f")})
    return facts


def pull_section(llm: Backend) -> None:
    """Pull a model with a progress bar, as in the chat page's sidebar."""
    with st.form("pull_form", clear_on_submit=False, border=False):
        name = st.text_input("Pull a model", key="models_pull_name", placeholder="e.g. llama3.2:3b")
        submitted = st.form_submit_button("Pull", icon=":material/download:")
    if not submitted:
        return
    if not pull_with_progress(llm, name, st):
        return
    st.success(text(f"Pulled {llm.canonical(name)}."))


def results_section(folder: Path) -> None:
    """The latest evaluation's figures as a table and a quality-vs-speed chart."""
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    summary = summary_of_file(files[-1]) if files else None
    if summary is None:
        st.info("No evaluation yet. Run one below, or in a terminal: "
                "`python -m rag.eval QUESTIONS.csv --answers --models A,B`.")
        return
    st.caption(text(f"{summary['questions']} questions · {files[-1]}"))
    table = [table_row({"model": model, **{k: in_gigabytes(k, v) for k, v in figures.items() if k not in ("error", "judge")}})
             for model, figures in summary["models"].items()]
    st.dataframe(table, hide_index=True, key="results_table", width="stretch",
                 column_config={key: st.column_config.Column(label, help=help_text)
                                for key, (label, help_text) in RESULT_COLUMNS.items()})
    points = [row for row in table if row["tokens_per_s"] is not None]
    metric = st.radio("Quality measure", list(CHART_METRICS), format_func=CHART_METRICS.get, horizontal=True,
                      key="chart_metric")
    if points:
        st.scatter_chart([{"model": r["model"], "tokens per second": r["tokens_per_s"],
                           CHART_METRICS[metric]: r[metric]} for r in points],
                         x="tokens per second", y=CHART_METRICS[metric], color="model", size=200,
                         height=320)
        st.caption("Up is better answers, right is faster: the best model for you is the one furthest up and right "
                   "that fits your machine.")


def in_gigabytes(key: str, value):
    """A results figure as the table shows it: sizes in GB with one decimal, as the sidebar gives them."""
    return round(value / 1e9, 1) if key in ("size", "size_vram") and value else value


def progress_line(job: background_eval.Job) -> str:
    """The progress bar's words: answers done of all, or what the run does before its first count."""
    done, total = job.progress.get("done", 0), job.progress.get("total", 0)
    if total:
        return f"Evaluation {job.state}: {done} of {total} answers"
    if job.state == "running":
        return "Evaluation starting: loading the embedder and reading the questions…"
    return f"Evaluation {job.state} before its first answer"


@st.fragment(run_every=POLL_SECONDS)
def job_status(settings) -> None:
    """The background evaluation's progress, read from its files every few seconds; when a run this page watched
    ends, the whole page is drawn again, so "Latest evaluation" shows what it wrote."""
    job = background_eval.current_job(settings)
    if job is None:
        return
    state = job.state
    watched = st.session_state.get("eval_state_seen")
    st.session_state.eval_state_seen = state
    if watched == "running" and state != "running":
        st.rerun()
    st.progress(job.fraction, text=progress_line(job))
    if state == "running":
        st.button("Stop the evaluation", key="stop_eval", on_click=background_eval.stop, args=(job,))
    elif state == "failed":
        st.error(notice(f"The evaluation stopped: {job.last_error() or 'see ' + str(job.log)}"))
    elif state == "interrupted":
        st.warning("The evaluation was stopped; starting it again goes on where it stopped.")


def run_section(settings, facts: list[catalogue.ModelFacts]) -> None:
    """Start an evaluation on a sample of labelled questions in the background; the form keeps what was last started."""
    folder = background_eval.evaluations_dir(settings)
    installed = [f.name for f in facts]
    evaluation_form.restore_form(st.session_state, folder, installed)
    st.session_state.eval_models = [m for m in st.session_state.eval_models if m in installed]
    with st.form("eval_form", border=False):
        truth = st.text_input("Questions file (CSV)", key="eval_truth", placeholder="path/to/ground-truth.csv")
        left, middle, right = st.columns(3)
        question = left.text_input("Question column", key="eval_question_column")
        document = middle.text_input("Expected document column", key="eval_id_column")
        filter_column = right.text_input("Filter column (optional)", key="eval_filter_column")
        models = st.multiselect("Models", installed, key="eval_models", format_func=one_line)
        sample = st.number_input("Questions (a fixed random sample)", *evaluation_form.SAMPLE_RANGE, key="eval_sample")
        submitted = st.form_submit_button("Run the evaluation in the background", icon=":material/play_arrow:")
    if submitted:
        evaluation_form.save_form(folder, st.session_state)
        columns = {"question_column": question, "id_column": document, "filter_column": filter_column.strip()}
        try:
            background_eval.start(settings, Path(truth.strip()).expanduser(), models, int(sample), columns)
        except RagError as exc:
            st.error(notice(exc))


def main() -> None:
    try:
        settings = load_settings()
    except RagError as exc:
        st.error(notice(exc))
        st.stop()
    llm = open_backend(settings)
    st.title("Models")
    st.subheader("Installed")
    facts = installed(llm)
    if llm.can_pull():
        pull_section(llm)
    st.subheader("Latest evaluation")
    results_section(background_eval.evaluations_dir(settings))
    st.subheader("Evaluate on your questions")
    job_status(settings)
    run_section(settings, facts)


main()

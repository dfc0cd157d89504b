# One image for every fairvalue process: migrate, api, worker, training-worker, beat, flower.
# Build: docker build -t fairvalue:local .   (docker-compose.yml builds it for you)

# --- build: a wheel of the project, so the runtime image holds one copy of the code ---
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml beat_schedule.py ./
COPY fairvalue ./fairvalue
COPY tasks ./tasks
COPY api ./api
COPY models ./models
COPY storage ./storage
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime ---
FROM python:3.11-slim

# FAIRVALUE_DATA_DIR, FAIRVALUE_CARDS_CONFIG: the bundled market data and the card universe are
# read from the source tree (settings default to <project root>/data and /config), which an
# installed package does not have: use the copies in /app.
# FAIRVALUE_VAR_DIR: writable state (the beat schedule; the embedded defaults if no URL is set).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FAIRVALUE_DATA_DIR=/app/data \
    FAIRVALUE_CARDS_CONFIG=/app/config/cards.yaml \
    FAIRVALUE_VAR_DIR=/var/lib/fairvalue

RUN groupadd --system --gid 10001 fairvalue \
    && useradd --system --uid 10001 --gid fairvalue --home-dir /var/lib/fairvalue --no-create-home \
        --shell /usr/sbin/nologin fairvalue \
    && install -d -o fairvalue -g fairvalue -m 0750 /var/lib/fairvalue

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels
COPY data ./data
COPY config ./config

# Recorded on every model version trained here (the image has no git):
#   docker build --build-arg CODE_VERSION=$(git rev-parse --short HEAD)
# docker-compose.yml passes it from FAIRVALUE_CODE_VERSION. Declared last: a changed build arg
# misses the cache from its first use on, so set any earlier it would reinstall the dependencies
# on every commit.
ARG CODE_VERSION=unknown
ENV FAIRVALUE_CODE_VERSION=${CODE_VERSION}

USER fairvalue:fairvalue
EXPOSE 8000 5555

# No HEALTHCHECK here: each service's own is in docker-compose.yml (one-shot jobs have none).
CMD ["fairvalue", "api", "--host", "0.0.0.0", "--port", "8000"]

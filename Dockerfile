# One image for every Switchboard process; docker-compose.yml picks the role by command:
#   api     uvicorn api.main:app --host 0.0.0.0 --port 8000          (the default CMD)
#   worker  celery -A workers.celery_app worker -P gevent -Q <provider> --prefetch-multiplier=1
#   flower  celery -A workers.celery_app flower --port=5555
#   migrate switchboard migrate                                        (alembic upgrade head)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; \
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The application. alembic.ini and alembic/ stay in /app: migrations run from here.
COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info

RUN useradd --create-home --uid 10001 --user-group switchboard
USER switchboard

EXPOSE 8000 5555
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

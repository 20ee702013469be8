# The image Vertex AI Pipelines runs every component in (and a Dataflow
# sdk_container_image, if desired). Build and push it, then pass it as
# `--vertex_image`:
#   docker build -t us-docker.pkg.dev/PROJECT/REPO/retinanet-tfx:latest .
#   docker push us-docker.pkg.dev/PROJECT/REPO/retinanet-tfx:latest
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline
COPY requirements/requirements.lock requirements/requirements.lock
# The same pinned, hashed set as local runs (dill included: tfx_bsl and
# tensorflow_transform import it and apache-beam no longer installs it).
RUN python -m pip install --no-cache-dir --no-deps --require-hashes -r requirements/requirements.lock
COPY . .
ENV PYTHONPATH=/pipeline TF_USE_LEGACY_KERAS=1

# The operator's image: the same `node src/main.ts` as `npm start`, the demo and
# the e2e tests, on the same Node (dev/scripts/provision.sh pins NODE_VERSION;
# test/e2e/install.test.ts checks that this file agrees with it, with
# package.json and with what src/main.ts imports).
#
#   docker build -t registry.example.com/ai-operator:0.1.0 .
ARG NODE_VERSION=24.21.0

# Production dependencies only, from the lock file.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production
# V8's heap from the container's memory limit, not the node's: 30 % of it (307 MiB
# under the chart's 1 GiB). The rest is Node's own memory, buffers and headroom:
# with 25,000 Applications and 1,000 rollbacks at once the operator holds about
# 160 MiB, and without this V8 lets garbage pile up toward half the limit (`make
# bench` runs the operator with the same heap; README "Scale").
ENV NODE_OPTIONS=--max-old-space-size-percentage=30
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# "type": "module": Node runs src/*.ts as ES modules, stripping the types.
COPY package.json ./
COPY src ./src
# The event schemas, read at start-up (src/bus/validate.ts).
COPY schemas ./schemas
# The audit spool's default place (AUDIT_FALLBACK_DIR); in Kubernetes a volume.
RUN mkdir -p /var/lib/ai-operator/audit && chown -R 1000:1000 /var/lib/ai-operator
# The image's `node` user, by number so that runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080
CMD ["node", "src/main.ts"]

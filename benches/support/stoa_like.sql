-- STOA-like rows for the benchmarks: tenants, APIs with OpenAPI-like jsonb documents and
-- logos (bytea), consumers, subscriptions and audit events, with non-ASCII text, uuids and
-- random values, so compressors see data of realistic entropy (not generate_series
-- patterns). `stoa_bench.fill(first, last)` adds units [first, last]; one unit is 100 APIs,
-- 1,000 consumers, 2,500 subscriptions and 10,000 audit events (about 7 MB of raw dump).
-- Deterministic: each unit seeds the generator with its number.
CREATE SCHEMA IF NOT EXISTS stoa;
CREATE SCHEMA IF NOT EXISTS stoa_bench;
DO $$ BEGIN
  CREATE TYPE stoa.subscription_status AS ENUM ('pending', 'active', 'suspended', 'révoquée');
  CREATE TYPE stoa.event_kind AS ENUM ('api.call', 'api.publish', 'subscription.create',
    'subscription.revoke', 'consumer.login', 'tool.invoke', 'gateway.sync');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS stoa.tenants (
  id uuid PRIMARY KEY, slug text NOT NULL UNIQUE, name text NOT NULL,
  settings jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS stoa.apis (
  id uuid PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES stoa.tenants(id),
  name text NOT NULL, version text NOT NULL, spec jsonb NOT NULL, logo bytea,
  updated_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS stoa.consumers (
  id uuid PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES stoa.tenants(id),
  email text NOT NULL, display_name text NOT NULL, metadata jsonb NOT NULL,
  api_key_hash bytea NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS stoa.subscriptions (
  id uuid PRIMARY KEY, api_id uuid NOT NULL REFERENCES stoa.apis(id),
  consumer_id uuid NOT NULL REFERENCES stoa.consumers(id), plan text NOT NULL,
  status stoa.subscription_status NOT NULL, quota jsonb NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS stoa.audit_events (
  id bigint PRIMARY KEY, tenant_id uuid NOT NULL, actor uuid NOT NULL,
  kind stoa.event_kind NOT NULL, at timestamptz NOT NULL, request jsonb NOT NULL,
  message text NOT NULL);

CREATE OR REPLACE FUNCTION stoa_bench.words(n int) RETURNS text LANGUAGE sql VOLATILE AS $f$
  SELECT string_agg((ARRAY['passerelle','gateway','abonnement','consommateur','Schlüssel',
    'Übersicht','données','sécurité','latence','requête','réponse','quota','tenant','outil',
    'MCP','ツール','ゲートウェイ','認証','東京','Zürich','São','Paulo','Kraków','Ελλάδα','Москва',
    'api','v1','v2','catalog','subscription','revoked','approved','rate-limit','timeout',
    'upstream','downstream','Keycloak','OIDC','token','refresh','scope','role','admin',
    'lecture','écriture','invoice','facture','paiement','commande','livraison','météo',
    'weather','forecast','prévision','café','naïve','garçon','Ärger','straße','🚀','✓'])
    [1 + floor(random() * 61)::int], ' ')
  FROM generate_series(1, n)
$f$;

CREATE OR REPLACE FUNCTION stoa_bench.random_bytes(n int) RETURNS bytea LANGUAGE sql VOLATILE AS $f$
  SELECT decode(string_agg(md5(random()::text), ''), 'hex')
  FROM generate_series(1, (n + 15) / 16)
$f$;

CREATE OR REPLACE FUNCTION stoa_bench.fill(first_unit int, last_unit int) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE u int; tenant_ids uuid[]; api_ids uuid[]; consumer_ids uuid[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM stoa.tenants) THEN
    PERFORM setseed(0.5);
    INSERT INTO stoa.tenants
    SELECT gen_random_uuid(), 'tenant-' || g, initcap(stoa_bench.words(3)) || ' ' || g,
      jsonb_build_object('plan', (ARRAY['free','team','enterprise'])[1 + g % 3],
        'region', (ARRAY['eu-west-3','eu-central-1','ap-northeast-1'])[1 + g % 3],
        'features', jsonb_build_array('mcp', 'rate-limit', 'audit'),
        'contact', 'ops+' || g || '@tenant-' || g || '.example'),
      timestamptz '2024-01-01' + g * interval '37 minutes'
    FROM generate_series(1, 500) g;
  END IF;
  SELECT array_agg(id ORDER BY slug) INTO tenant_ids FROM stoa.tenants;
  FOR u IN first_unit .. last_unit LOOP
    PERFORM setseed((u % 997) / 997.0);
    WITH ins AS (INSERT INTO stoa.apis
    SELECT gen_random_uuid(), t.id, 'api-' || u || '-' || g, 'v' || (1 + g % 4) || '.' || (g % 10),
      jsonb_build_object('openapi', '3.1.0',
        'info', jsonb_build_object('title', initcap(stoa_bench.words(4)), 'description', stoa_bench.words(40),
          'version', '1.' || g),
        'servers', jsonb_build_array(jsonb_build_object('url', 'https://gw.' || t.slug || '.example/v' || (1 + g % 4))),
        'paths', (SELECT jsonb_object_agg('/' || stoa_bench.words(2) || '/' || p,
            jsonb_build_object('get', jsonb_build_object('summary', stoa_bench.words(8),
              'operationId', md5(random()::text),
              'responses', jsonb_build_object('200', jsonb_build_object('description', stoa_bench.words(6))))))
          FROM generate_series(1, 6 + g % 10) p)),
      CASE WHEN g % 3 = 0 THEN NULL ELSE stoa_bench.random_bytes(256 + (random() * 1800)::int) END,
      timestamptz '2025-01-01' + random() * interval '300 days'
    FROM generate_series(1, 100) g
    JOIN stoa.tenants t ON t.slug = 'tenant-' || (1 + (u * 100 + g) % 500)
    RETURNING id) SELECT array_agg(id) INTO api_ids FROM ins;

    WITH ins AS (INSERT INTO stoa.consumers
    SELECT gen_random_uuid(), t.id,
      lower(replace(stoa_bench.words(1), ' ', '')) || '.' || (u * 1000 + g) || '@consumers.example',
      initcap(stoa_bench.words(2)),
      jsonb_build_object('company', initcap(stoa_bench.words(2)), 'country',
        (ARRAY['FR','DE','JP','BR','PL','GR','CH'])[1 + (random() * 6)::int],
        'tags', jsonb_build_array(stoa_bench.words(1), stoa_bench.words(1)),
        'ip', (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int),
      stoa_bench.random_bytes(32),
      timestamptz '2024-06-01' + random() * interval '500 days'
    FROM generate_series(1, 1000) g
    JOIN stoa.tenants t ON t.slug = 'tenant-' || (1 + (u * 1000 + g) % 500)
    RETURNING id) SELECT array_agg(id) INTO consumer_ids FROM ins;

    INSERT INTO stoa.subscriptions
    SELECT gen_random_uuid(), api_ids[1 + floor(random() * array_length(api_ids, 1))::int],
      consumer_ids[1 + floor(random() * array_length(consumer_ids, 1))::int],
      (ARRAY['free','basic','premium','unlimited'])[1 + (random() * 3)::int],
      (ARRAY['pending','active','active','active','suspended','révoquée']::stoa.subscription_status[])[1 + (random() * 5)::int],
      jsonb_build_object('requests_per_minute', (random() * 6000)::int, 'burst', (random() * 100)::int,
        'reset', 'monthly', 'note', stoa_bench.words(5)),
      timestamptz '2025-01-01' + random() * interval '300 days'
    FROM generate_series(1, 2500) g;

    INSERT INTO stoa.audit_events
    SELECT u::bigint * 10000 + g, tenant_ids[1 + floor(random() * 500)::int], gen_random_uuid(),
      (ARRAY['api.call','api.call','api.call','tool.invoke','subscription.create','consumer.login','gateway.sync']::stoa.event_kind[])[1 + (random() * 6)::int],
      timestamptz '2025-06-01' + (u * 10000 + g) * interval '250 milliseconds' + random() * interval '1 second',
      jsonb_build_object('method', (ARRAY['GET','POST','PUT','DELETE'])[1 + (random() * 3)::int],
        'path', '/v' || (1 + (random() * 3)::int) || '/' || stoa_bench.words(2) || '/' || (random() * 100000)::int,
        'status', (ARRAY[200,200,200,201,204,400,401,403,404,429,500,502])[1 + (random() * 11)::int],
        'latency_ms', round((random() * random() * 2000)::numeric, 2),
        'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','curl/8.5.0','stoa-cli/0.9.1','python-httpx/0.27','Go-http-client/2.0'])[1 + (random() * 4)::int],
        'ip', (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int,
        'trace_id', md5(random()::text), 'bytes', (random() * 50000)::int),
      stoa_bench.words(6 + (random() * 10)::int)
    FROM generate_series(1, 10000) g;
  END LOOP;
END $f$;

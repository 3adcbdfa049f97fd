#!/usr/bin/env node
/*
 * Drives an Identity Hub with the real, published 2019 JavaScript clients, unchanged:
 *
 *   sdk "hub-sdk-js"    @decentralized-identity/hub-sdk-js 0.1.2: HubSession, RsaCommitSigner,
 *                       Commit, Hub*Request, CommitStrategyBasic - on the did-auth-jose 0.1.9 and
 *                       did-common-typescript 0.1.4 that hub-sdk-js pins (its nested copies).
 *   sdk "did-auth-jose" @decentralized-identity/did-auth-jose 0.1.14 used directly:
 *                       Authentication.getAuthenticatedRequest / getVerifiedRequest, JwsToken
 *                       (RS256 or ES256K) for commits, did-common-typescript 0.1.19 HttpResolver.
 *
 * Usage: node driver.js CONFIG.json   (or the JSON on stdin, or `-`)
 * Config: {
 *   "hubEndpoint": "http://127.0.0.1:PORT/.identity", "hubDid": "did:...",
 *   "resolverUrl": "http://127.0.0.1:PORT",   (GET {url}/1.0/identifiers/{did} -> {"document": ...})
 *   "sdk": "hub-sdk-js" | "did-auth-jose",
 *   "client": {"did": "did:...", "kid": "did:...#key-1", "privateJwk": {RSA or EC secp256k1 JWK},
 *              "encryption": {"kid": "...", "privateJwk": {RSA JWK}}   (optional, did-auth-jose)}
 * }
 * The private JWKs are used as given (their `kid` and `use` members matter to the libraries: an RSA
 * key's `kid` must be a suffix of its DID key id, an EC key's `kid` is the full key id, and
 * did-auth-jose 0.1.14 signs only with a key whose `use` is "sig").
 *
 * Scenario: token handshake; create a schema.org MusicPlaylist; object query; commit query and
 * client-side fold; update; token renewal after a 401 (the cached token is corrupted, the next
 * request must be refused, re-handshaken and retried); delete; an encrypted ErrorResponse
 * (update of an unknown object -> not_found). Prints ONE JSON line with the results on stdout
 * (HTTP statuses seen, revisions, token claim names, and the distinct JWE/JWS headers of the hub's
 * responses as the client decrypted them) and exits 0; on any failure prints a message on stderr and exits 1. Library chatter (console.log in
 * did-auth-jose's key store and resolver) is sent to stderr so stdout stays one JSON line.
 */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const writeStdout = process.stdout.write.bind(process.stdout);
console.log = (...args) => console.error(...args);
console.info = console.log;

const SCHEMA = 'https://schema.org';
const TYPE = 'MusicPlaylist';
const PROTOCOL_CONTEXT = 'https://schema.identity.foundation/0.1';

class DriverError extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new DriverError(message);
  }
}

function b64uDecode(text) {
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
}

function revisionOf(flattened) {
  return crypto.createHash('sha256').update(`${flattened.protected}.${flattened.payload}`).digest('hex');
}

/** A token whose signature no longer verifies (last signature characters changed). */
function corrupt(token) {
  const parts = token.split('.');
  const sig = parts[2];
  const tail = sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA';
  parts[2] = sig.slice(0, -4) + tail;
  return parts.join('.');
}

/** Records the (distinct) JWE and inner JWS headers of the hub's responses, as decrypted. */
function envelopeRecorder(envelopes) {
  const seen = new Set();
  return (jwe, jws) => {
    const header = (token) => JSON.parse(b64uDecode(String(token).split('.')[0]));
    const h = header(jws);
    const entry = { jwe: header(jwe), jws: { alg: h.alg, kid: h.kid, nonce: typeof h['did-requester-nonce'] === 'string' } };
    const key = JSON.stringify(entry);
    if (!seen.has(key)) {
      seen.add(key);
      envelopes.push(entry);
    }
  };
}

function readConfig() {
  const arg = process.argv[2];
  const text = !arg || arg === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(arg, 'utf8');
  const config = JSON.parse(text);
  for (const name of ['hubEndpoint', 'hubDid', 'resolverUrl', 'sdk', 'client']) {
    check(config[name], `config: '${name}' is required`);
  }
  for (const name of ['did', 'kid', 'privateJwk']) {
    check(config.client[name], `config: 'client.${name}' is required`);
  }
  return config;
}

/** Records the HTTP status of every hub call, to prove a 401 really happened. */
function recordingFetch(fetchImpl, statuses) {
  return async (url, init) => {
    const response = await fetchImpl(url, init);
    statuses.push(response.status);
    return response;
  };
}

// --- hub-sdk-js 0.1.2 ------------------------------------------------------------------------

function hubSdkClient(config, statuses, record) {
  const sdk = require('@decentralized-identity/hub-sdk-js');
  // The exact library versions hub-sdk-js runs on (it pins did-auth-jose 0.1.9 and
  // did-common-typescript 0.1.4; npm nests them under its own node_modules).
  const sdkDir = path.dirname(require.resolve('@decentralized-identity/hub-sdk-js/package.json'));
  const jose = require(require.resolve('@decentralized-identity/did-auth-jose', { paths: [sdkDir] }));
  const dct = require(require.resolve('@decentralized-identity/did-common-typescript', { paths: [sdkDir] }));
  const versions = {
    'hub-sdk-js': require('@decentralized-identity/hub-sdk-js/package.json').version,
    'did-auth-jose': require(require.resolve('@decentralized-identity/did-auth-jose/package.json', { paths: [sdkDir] })).version,
    'did-common-typescript': require(require.resolve('@decentralized-identity/did-common-typescript/package.json', { paths: [sdkDir] })).version,
  };
  const { client } = config;
  check(client.privateJwk.kty === 'RSA', 'hub-sdk-js 0.1.2 supports RSA requesters only (RsaCommitSigner)');
  const privateKey = jose.PrivateKeyRsa.wrapJwk(client.kid, client.privateJwk);
  const resolver = new dct.HttpResolver({ resolverUrl: config.resolverUrl, fetch: globalThis.fetch });
  const session = new sdk.HubSession({
    hubEndpoint: config.hubEndpoint,
    hubDid: config.hubDid,
    resolver,
    clientDid: client.did,
    clientPrivateKey: privateKey,
    targetDid: client.did,
  });
  // HubSession.callFetch is the SDK's own seam around node-fetch; wrap it to count statuses.
  const callFetch = session.callFetch.bind(session);
  session.callFetch = recordingFetch(callFetch, statuses);
  const signer = new sdk.RsaCommitSigner({ did: client.did, key: privateKey });
  // Observe (not change) what the client decrypts: did-auth-jose 0.1.9 getVerifiedRequest calls
  // JweToken#decrypt directly.
  const decrypt = jose.JweToken.prototype.decrypt;
  jose.JweToken.prototype.decrypt = async function observedDecrypt(jwk) {
    const jws = await decrypt.call(this, jwk);
    record(this.content, jws);
    return jws;
  };

  return {
    versions,
    alg: 'RS256',
    async handshake() {
      return session.getAccessToken();
    },
    get token() {
      return session.currentAccessToken;
    },
    set token(value) {
      session.currentAccessToken = value;
    },
    async signCommit(protectedHeaders, payload) {
      const signed = await new sdk.Commit({ protected: protectedHeaders, payload }).sign(signer);
      return signed.toFlattenedJson();
    },
    async write(flattened) {
      const response = await session.send(new sdk.HubWriteRequest(new sdk.SignedCommit(flattened)));
      return response.getRevisions();
    },
    async queryObjects(query) {
      const response = await session.send(new sdk.HubObjectQueryRequest(query));
      check(!response.hasSkipToken(), 'unexpected second page of objects');
      return response.getObjects();
    },
    async queryCommits(query) {
      const response = await session.send(new sdk.HubCommitQueryRequest(query));
      check(!response.hasSkipToken(), 'unexpected second page of commits');
      return response.getCommits().map((c) => c.toFlattenedJson());
    },
    async fold(flatCommits) {
      return new sdk.CommitStrategyBasic().resolveObject(flatCommits.map((c) => new sdk.SignedCommit(c)));
    },
    errorCode(error) {
      return sdk.HubError.is(error) ? error.getErrorCode() : undefined;
    },
  };
}

// --- did-auth-jose 0.1.14, used directly --------------------------------------------------------

function didAuthJoseClient(config, statuses, record) {
  const jose = require('@decentralized-identity/did-auth-jose');
  const dct = require('@decentralized-identity/did-common-typescript');
  const versions = {
    'did-auth-jose': require('@decentralized-identity/did-auth-jose/package.json').version,
    'did-common-typescript': require('@decentralized-identity/did-common-typescript/package.json').version,
  };
  const { client } = config;
  const wrap = (kid, jwk) => (jwk.kty === 'RSA' ? jose.PrivateKeyRsa.wrapJwk(kid, jwk) : jose.EcPrivateKey.wrapJwk(kid, jwk));
  const signingKey = wrap(client.kid, client.privateJwk);
  const keys = { [client.kid]: signingKey };
  if (client.encryption) {
    keys[client.encryption.kid] = wrap(client.encryption.kid, client.encryption.privateJwk);
  }
  const resolver = new dct.HttpResolver({ resolverUrl: config.resolverUrl, fetch: globalThis.fetch });
  const auth = new jose.Authentication({ keys, resolver });
  // Observe (not change) what the client decrypts: 0.1.14 decrypts through its key store.
  const decrypt = auth.keyStore.decrypt.bind(auth.keyStore);
  auth.keyStore.decrypt = async (reference, cipher, ...rest) => {
    const jws = await decrypt(reference, cipher, ...rest);
    record(cipher, jws);
    return jws;
  };
  const factory = new jose.CryptoFactory([new jose.RsaCryptoSuite(), new jose.Secp256k1CryptoSuite()]);
  const post = recordingFetch(globalThis.fetch, statuses);
  let token;

  // One round trip as the 2019 clients make it: JWE(JWS(content)) in, JWE(JWS(answer)) out.
  async function roundTrip(content, accessToken) {
    const body = await auth.getAuthenticatedRequest(content, config.hubDid, accessToken);
    const response = await post(config.hubEndpoint, {
      method: 'POST',
      body,
      headers: { 'Content-Type': 'application/jwt', 'Content-Length': body.length.toString() },
    });
    if (response.status !== 200) {
      const text = await response.text();
      let error;
      try {
        error = JSON.parse(text);
      } catch (e) {
        throw new DriverError(`hub answered HTTP ${response.status} with a non-JSON body: ${text.slice(0, 200)}`);
      }
      const err = new DriverError(`hub answered HTTP ${response.status}: ${text.slice(0, 200)}`);
      err.hubError = error;
      throw err;
    }
    const verified = await auth.getVerifiedRequest(Buffer.from(await response.arrayBuffer()), false);
    check(!(verified instanceof Buffer), 'the response was not a verified message');
    check(typeof verified.nonce === 'string' && verified.nonce.length > 0, 'the response JWS has no did-requester-nonce');
    return verified.request;
  }

  async function handshake() {
    token = await roundTrip('');
    return token;
  }

  // What HubSession.send does: one retry with a fresh token after authentication_failed.
  async function send(type, members) {
    const request = Object.assign({ '@context': PROTOCOL_CONTEXT, '@type': type }, members,
      { iss: client.did, aud: config.hubDid, sub: client.did });
    const text = JSON.stringify(request);
    if (!token) {
      await handshake();
    }
    let answer;
    try {
      answer = await roundTrip(text, token);
    } catch (e) {
      if (!(e.hubError && e.hubError.error_code === 'authentication_failed')) {
        throw e;
      }
      await handshake();
      answer = await roundTrip(text, token);
    }
    const response = JSON.parse(answer);
    if (response['@type'] === 'ErrorResponse') {
      const err = new DriverError(`hub error ${response.error_code}: ${response.developer_message || ''}`);
      err.hubError = response;
      throw err;
    }
    return response;
  }

  return {
    versions,
    alg: signingKey.defaultSignAlgorithm,
    handshake,
    get token() {
      return token;
    },
    set token(value) {
      token = value;
    },
    async signCommit(protectedHeaders, payload) {
      // As hub-sdk-js's CommitSigner does: sign a compact JWS, split it into the flattened form.
      const jws = factory.constructJws(JSON.stringify(payload));
      const compact = await jws.sign(signingKey, Object.assign({}, protectedHeaders, { iss: client.did }));
      const [protectedPart, payloadPart, signature] = compact.split('.');
      return { protected: protectedPart, header: {}, payload: payloadPart, signature };
    },
    async write(flattened) {
      return (await send('WriteRequest', { commit: flattened })).revisions;
    },
    async queryObjects(query) {
      const response = await send('ObjectQueryRequest', { query });
      check(response.skip_token === null, 'ObjectQueryResponse.skip_token must be present and null');
      return response.objects;
    },
    async queryCommits(query) {
      const response = await send('CommitQueryRequest', { query });
      check(response.skip_token === null, 'CommitQueryResponse.skip_token must be present and null');
      return response.commits;
    },
    async fold(flatCommits) {
      // hub-sdk-js CommitStrategyBasic rules: a create always loses, a delete always wins,
      // otherwise the later committed_at, then the larger rev.
      const decoded = flatCommits.map((c) => ({ h: JSON.parse(b64uDecode(c.protected)), c }));
      const later = (a, b) => {
        if (b.h.operation === 'create') return a;
        if (a.h.operation === 'create') return b;
        if (a.h.operation === 'delete') return a;
        if (b.h.operation === 'delete') return b;
        const ta = Date.parse(a.h.committed_at);
        const tb = Date.parse(b.h.committed_at);
        if (ta !== tb) return ta < tb ? b : a;
        return revisionOf(a.c) < revisionOf(b.c) ? b : a;
      };
      const latest = decoded.reduce(later);
      return latest.h.operation === 'delete' ? null : JSON.parse(b64uDecode(latest.c.payload));
    },
    errorCode(error) {
      return error.hubError ? error.hubError.error_code : undefined;
    },
  };
}

// --- the scenario -------------------------------------------------------------------------------

async function run(config) {
  const statuses = [];
  const envelopes = [];
  const timings = {};
  const timed = async (name, fn) => {
    const start = process.hrtime.bigint();
    const result = await fn();
    timings[name] = Number(process.hrtime.bigint() - start) / 1e6;
    return result;
  };
  const record = envelopeRecorder(envelopes);
  const hub = config.sdk === 'hub-sdk-js' ? hubSdkClient(config, statuses, record)
    : config.sdk === 'did-auth-jose' ? didAuthJoseClient(config, statuses, record)
      : null;
  check(hub, `config: unknown sdk '${config.sdk}'`);
  const did = config.client.did;

  // 1. token handshake
  const token = await timed('handshake', () => hub.handshake());
  check(typeof token === 'string' && token.split('.').length === 3, 'the handshake did not return a compact JWS token');
  const claims = JSON.parse(b64uDecode(token.split('.')[1]));
  check(claims.sub === did, `token sub is ${claims.sub}, expected ${did}`);
  check(statuses.length === 1 && statuses[0] === 200, `handshake statuses ${statuses}`);

  // 2. create
  const first = { '@context': SCHEMA, '@type': TYPE, name: 'Interop mix', numTracks: 2 };
  const header = (operation, objectId) => {
    const h = {
      interface: 'Collections', context: SCHEMA, type: TYPE, operation,
      committed_at: new Date().toISOString(), commit_strategy: 'basic', sub: did,
    };
    if (objectId) h.object_id = objectId;
    return h;
  };
  const createCommit = await hub.signCommit(header('create'), first);
  const createRevs = await timed('create', () => hub.write(createCommit));
  const objectId = revisionOf(createCommit);
  check(Array.isArray(createRevs) && createRevs.length === 1 && createRevs[0] === objectId,
    `create: revisions ${JSON.stringify(createRevs)}, expected [${objectId}]`);
  const signedHeader = JSON.parse(b64uDecode(createCommit.protected));

  // 3. object query
  const objects = await timed('objectQuery', () => hub.queryObjects({ interface: 'Collections', context: SCHEMA, type: TYPE }));
  const listed = objects.find((o) => o.id === objectId);
  check(listed, `object query: ${objectId} not listed in ${JSON.stringify(objects)}`);
  for (const [name, value] of Object.entries({ interface: 'Collections', context: SCHEMA, type: TYPE, created_by: did, sub: did, commit_strategy: 'basic' })) {
    check(listed[name] === value, `object metadata ${name} is ${JSON.stringify(listed[name])}, expected ${value}`);
  }

  // 4. commit query + client-side fold
  const history1 = await timed('commitQuery', () => hub.queryCommits({ object_id: [objectId] }));
  check(history1.length === 1 && history1[0].header && history1[0].header.rev === objectId
    && history1[0].header.object_id === objectId && history1[0].header.iss === did,
  `commit query after create: ${JSON.stringify(history1.map((c) => c.header))}`);
  check(history1[0].signature === createCommit.signature, 'the stored commit is not the one sent');
  const state1 = await hub.fold(history1);
  check(state1 && state1.name === 'Interop mix' && state1.numTracks === 2, `fold after create: ${JSON.stringify(state1)}`);

  // 5. update (committed_at strictly later than the create's, so the fold is unambiguous)
  await new Promise((resolve) => setTimeout(resolve, 5));
  const second = Object.assign({}, first, { numTracks: 3 });
  const updateCommit = await hub.signCommit(header('update', objectId), second);
  const updateRevs = await timed('update', () => hub.write(updateCommit));
  check(updateRevs.length === 2 && updateRevs.includes(objectId) && updateRevs.includes(revisionOf(updateCommit)),
    `update: revisions ${JSON.stringify(updateRevs)}`);

  // 6. token renewal: the cached token is broken, the hub must answer 401, the client must make a
  //    new handshake and retry the same request successfully.
  const before = statuses.length;
  hub.token = corrupt(hub.token);
  const broken = hub.token;
  const history2 = await timed('renewal', () => hub.queryCommits({ object_id: [objectId] }));
  const renewal = statuses.slice(before);
  check(JSON.stringify(renewal) === '[401,200,200]', `renewal: expected HTTP 401, 200 (handshake), 200 (retry); got ${renewal}`);
  check(hub.token && hub.token !== broken && hub.token !== token, 'renewal: no new token');
  check(history2.length === 2, `commit query after update: ${history2.length} commits`);
  const state2 = await hub.fold(history2);
  check(state2 && state2.numTracks === 3, `fold after update: ${JSON.stringify(state2)}`);

  // 7. delete
  await new Promise((resolve) => setTimeout(resolve, 5));
  const deleteCommit = await hub.signCommit(header('delete', objectId), {});
  const deleteRevs = await timed('delete', () => hub.write(deleteCommit));
  check(deleteRevs.length === 3 && deleteRevs.includes(revisionOf(deleteCommit)), `delete: revisions ${JSON.stringify(deleteRevs)}`);
  const history3 = await hub.queryCommits({ object_id: [objectId] });
  check(history3.length === 3, `commit query after delete: ${history3.length} commits`);
  const state3 = await hub.fold(history3);
  check(state3 === null, `fold after delete: ${JSON.stringify(state3)}`);

  // 8. an ErrorResponse, signed and encrypted like any answer (HTTP 200)
  const unknown = crypto.createHash('sha256').update(`unknown ${objectId}`).digest('hex');
  let errorCode;
  try {
    await hub.write(await hub.signCommit(header('update', unknown), second));
  } catch (e) {
    errorCode = hub.errorCode(e);
    if (errorCode === undefined) throw e;
  }
  check(errorCode === 'not_found', `update of an unknown object: expected not_found, got ${errorCode}`);

  return {
    ok: true,
    sdk: config.sdk,
    versions: hub.versions,
    alg: signedHeader.alg,
    kid: signedHeader.kid,
    did,
    objectId,
    revisions: { create: createRevs, update: updateRevs, delete: deleteRevs },
    tokenClaims: Object.keys(claims).sort(),
    renewalStatuses: renewal,
    statuses,
    responseEnvelopes: envelopes,
    errorCode,
    timingsMs: timings,
  };
}

async function main() {
  let config;
  try {
    config = readConfig();
  } catch (e) {
    console.error(`driver: bad config: ${e.message}`);
    process.exit(2);
  }
  try {
    const result = await run(config);
    writeStdout(`${JSON.stringify(result)}\n`);
    process.exitCode = 0;
  } catch (e) {
    const detail = e instanceof DriverError ? e.message : (e && e.stack) || String(e);
    const body = e && e.body ? ` ${JSON.stringify(e.body)}` : '';
    console.error(`driver (${config.sdk}) FAILED: ${detail}${body}`);
    process.exitCode = 1;
  }
}

process.on('unhandledRejection', (reason) => {
  console.error(`driver: unhandled rejection: ${(reason && reason.stack) || reason}`);
  process.exit(1);
});

main();

'use strict';
// GitHub REST API behaviour for the provider simulator.
//
// Reproduces the documented wire behaviour of the endpoints Junction's GitHub
// connector uses: response shapes, Link-header pagination, per-token primary
// rate limits and their headers, and GitHub's error bodies. The data set is
// generated deterministically from a seed (see generateDataset).
//
// The module is transport-agnostic: respond() turns a request into a response
// descriptor {status, headers, body}; server.js writes it (or mangles it when a
// fault is injected).

const crypto = require('node:crypto');
const fs = require('node:fs');
const { Rng, deriveSeed } = require('../lib/prng');

// The data set's notion of "now": fixed so that timestamps are reproducible.
const DATASET_NOW = Date.UTC(2026, 9, 1, 0, 0, 0);
const API_VERSION = '2022-11-28';
const DEFAULT_PER_PAGE = 30;
const MAX_PER_PAGE = 100;
const WINDOW_SECONDS = 3600;
const ANON_LIMIT = 60;
const CACHE_MAX_BYTES = 256 * 1024 * 1024;

const DOCS = {
  root: 'https://docs.github.com/rest',
  getOrg: 'https://docs.github.com/rest/orgs/orgs#get-an-organization',
  listMembers: 'https://docs.github.com/rest/orgs/members#list-organization-members',
  listRepos: 'https://docs.github.com/rest/repos/repos#list-organization-repositories',
  getRepo: 'https://docs.github.com/rest/repos/repos#get-a-repository',
  getProtection: 'https://docs.github.com/rest/branches/branch-protection#get-branch-protection',
  getUser: 'https://docs.github.com/rest/users/users#get-the-authenticated-user',
  installationToken: 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app',
  primary: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits',
  secondary: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
};

// ---------------------------------------------------------------------------
// Data set
// ---------------------------------------------------------------------------

const FIRST = ['alex', 'sam', 'maria', 'li', 'noah', 'emma', 'omar', 'yuki', 'ivan', 'fatima', 'lucas', 'sofia',
  'arjun', 'chen', 'olga', 'diego', 'amara', 'jonas', 'priya', 'mateo', 'hana', 'kofi', 'elena', 'tariq', 'mia',
  'pablo', 'nadia', 'felix', 'zara', 'ravi', 'ingrid', 'tomas', 'leila', 'owen', 'aiko', 'bruno', 'chloe', 'dmitri',
  'eva', 'femi', 'greta', 'hugo', 'isla', 'jamal', 'kira', 'lars', 'mei', 'nico', 'oscar', 'petra'];
const LAST = ['smith', 'garcia', 'wang', 'mueller', 'kim', 'novak', 'silva', 'tanaka', 'ivanova', 'haddad', 'okafor',
  'rossi', 'nguyen', 'kowalski', 'jensen', 'patel', 'moreau', 'lopez', 'berg', 'sato', 'costa', 'fischer', 'ahmed',
  'larsen', 'dubois', 'romero', 'yilmaz', 'kumar', 'schmidt', 'ortiz', 'lind', 'mensah', 'park', 'weber', 'reyes'];
const WORDS = ['dev', 'code', 'ops', 'hub', 'io', 'x', 'sec', 'js', 'py', 'rs', 'cloud', 'data'];
const REPO_A = ['payments', 'auth', 'billing', 'web', 'api', 'infra', 'data', 'ml', 'mobile', 'ios', 'android',
  'docs', 'terraform', 'k8s', 'search', 'ledger', 'identity', 'notifications', 'reporting', 'checkout', 'catalog',
  'inventory', 'gateway', 'analytics', 'admin', 'support', 'growth', 'risk', 'fraud', 'compliance', 'platform',
  'observability', 'edge', 'storage', 'queue', 'scheduler', 'design-system', 'marketing', 'partner', 'pricing'];
const REPO_B = ['service', 'api', 'worker', 'ui', 'sdk', 'cli', 'lib', 'config', 'pipeline', 'gateway', 'proxy',
  'dashboard', 'jobs', 'schemas', 'infra', 'tests', 'bench', 'migrations', 'events', 'client', 'server', 'tools',
  'charts', 'modules', 'playbooks', 'site', 'app', 'core', 'common', 'e2e'];
const LANGUAGES = [['TypeScript', 22], ['Go', 18], ['Python', 16], ['Java', 10], ['JavaScript', 9], ['HCL', 7],
  ['Ruby', 5], ['Kotlin', 4], ['Swift', 3], ['Rust', 3], ['C++', 1], ['Shell', 2], [null, 3]];
const TOPICS = ['security', 'internal', 'backend', 'frontend', 'infrastructure', 'terraform', 'kubernetes', 'pci',
  'sox', 'gdpr', 'library', 'service', 'deprecated', 'mobile', 'data'];
const LICENSES = [
  { key: 'mit', name: 'MIT License', spdx_id: 'MIT' },
  { key: 'apache-2.0', name: 'Apache License 2.0', spdx_id: 'Apache-2.0' },
  { key: 'bsd-3-clause', name: 'BSD 3-Clause "New" or "Revised" License', spdx_id: 'BSD-3-Clause' },
  { key: 'other', name: 'Other', spdx_id: 'NOASSERTION' },
];
const STATUS_CONTEXTS = ['ci/build', 'ci/test', 'lint', 'security/codeql', 'license/check', 'e2e', 'deploy/preview'];
const TEAM_NAMES = ['Platform', 'Security', 'Release Managers', 'SRE', 'Payments Core', 'Mobile'];

function isoTime(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

function legacyNodeId(kind, id) {
  // GitHub's legacy global node ids: base64("0<len(Type)>:<Type><id>"), e.g. "04:User1", "012:Organization1".
  return Buffer.from(`0${kind.length}:${kind}${id}`).toString('base64');
}

function slugify(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function makeLogin(rng, used) {
  const f = rng.pick(FIRST);
  const l = rng.pick(LAST);
  const shape = rng.int(0, 5);
  let login;
  if (shape === 0) login = `${f}${l}`;
  else if (shape === 1) login = `${f}-${l}`;
  else if (shape === 2) login = `${f[0]}${l}`;
  else if (shape === 3) login = `${f}${l}${rng.int(1, 99)}`;
  else if (shape === 4) login = `${f}-${rng.pick(WORDS)}`;
  else login = `${l}${f[0]}${rng.int(1, 9)}`;
  let candidate = login;
  for (let n = 2; used.has(candidate); n++) candidate = `${login}-${n}`;
  used.add(candidate);
  return candidate;
}

function makeProtection(rng, org) {
  const tier = rng.weighted([['basic', 25], ['standard', 45], ['strict', 30]]);
  const team = () => org.teams[rng.int(0, org.teams.length - 1)];
  if (tier === 'basic') {
    return {
      tier,
      statusChecks: null,
      reviews: null,
      restrictions: null,
      enforceAdmins: false,
      signatures: false,
      linearHistory: false,
      allowForcePushes: rng.bool(0.3),
      allowDeletions: rng.bool(0.2),
      blockCreations: false,
      conversationResolution: false,
      lockBranch: false,
      allowForkSyncing: false,
    };
  }
  if (tier === 'standard') {
    return {
      tier,
      statusChecks: rng.bool(0.7) ? { strict: rng.bool(0.6), contexts: rng.sample(STATUS_CONTEXTS.slice(0, 3), rng.int(1, 2)) } : null,
      reviews: {
        count: 1,
        dismissStale: rng.bool(0.5),
        codeOwners: rng.bool(0.3),
        lastPush: false,
        dismissalTeams: [],
      },
      restrictions: null,
      enforceAdmins: rng.bool(0.3),
      signatures: rng.bool(0.1),
      linearHistory: rng.bool(0.3),
      allowForcePushes: rng.bool(0.05),
      allowDeletions: false,
      blockCreations: false,
      conversationResolution: rng.bool(0.4),
      lockBranch: false,
      allowForkSyncing: false,
    };
  }
  return {
    tier,
    statusChecks: { strict: true, contexts: rng.sample(STATUS_CONTEXTS, rng.int(2, 4)) },
    reviews: {
      count: rng.int(2, 3),
      dismissStale: true,
      codeOwners: true,
      lastPush: rng.bool(0.6),
      dismissalTeams: rng.bool(0.5) ? [team()] : [],
    },
    restrictions: rng.bool(0.5) ? { teams: [team()], users: [] } : null,
    enforceAdmins: true,
    signatures: rng.bool(0.7),
    linearHistory: true,
    allowForcePushes: false,
    allowDeletions: false,
    blockCreations: rng.bool(0.2),
    conversationResolution: true,
    lockBranch: false,
    allowForkSyncing: false,
  };
}

function generateOrg(seed, login, index, opts, usedLogins, ownerUser) {
  const rng = new Rng(deriveSeed(seed, `org:${login}`));
  const createdAt = Date.UTC(2011, 0, 1) + rng.int(0, 4 * 365) * 86400000 + rng.int(0, 86399) * 1000;
  const org = {
    login,
    id: 1000000 + index * 7919 + rng.int(0, 7000),
    name: login.charAt(0).toUpperCase() + login.slice(1),
    createdAt,
    updatedAt: DATASET_NOW - rng.int(1, 60) * 86400000,
    members: [],
    repos: [],
    teams: [],
  };
  org.nodeId = legacyNodeId('Organization', org.id);
  org.teams = TEAM_NAMES.map((name, i) => ({
    id: org.id * 10 + i + 1,
    name,
    slug: slugify(name),
    description: `${name} team`,
  }));

  // Members: the first configured token's user is an owner of every org (with
  // 2FA on) and occupies slot 0, so the data set stays exactly --members long.
  const memberCount = Math.max(0, opts.members);
  if (memberCount > 0) {
    org.members.push({ login: ownerUser.login, id: ownerUser.id, role: 'admin', twoFactor: 'webauthn' });
  }
  let nextId = 2000 + index * 100000000 + rng.int(0, 5000);
  for (let i = 1; i < memberCount; i++) {
    nextId += rng.int(1, 40000);
    const role = rng.bool(0.03) ? 'admin' : 'member';
    // ~7% without 2FA, ~4% with SMS only ("insecure"), the rest TOTP or security keys.
    const r = rng.float();
    const twoFactor = r < 0.07 ? 'none' : r < 0.11 ? 'sms' : r < 0.7 ? 'totp' : 'webauthn';
    org.members.push({ login: makeLogin(rng, usedLogins), id: nextId, role, twoFactor });
  }

  // Repositories, generated in creation order so ids grow with created_at.
  const repoCount = Math.max(0, opts.repos);
  const span = DATASET_NOW - 30 * 86400000 - createdAt;
  const createdTimes = [];
  for (let i = 0; i < repoCount; i++) createdTimes.push(createdAt + Math.floor(rng.float() * span));
  createdTimes.sort((a, b) => a - b);
  const usedNames = new Set();
  let repoId = 10000000 + index * 100000000 + rng.int(0, 100000);
  for (let i = 0; i < repoCount; i++) {
    repoId += rng.int(1, 20000);
    const base = `${rng.pick(REPO_A)}-${rng.pick(REPO_B)}`;
    let name = base;
    for (let n = 2; usedNames.has(name.toLowerCase()); n++) name = `${base}-${n}`;
    usedNames.add(name.toLowerCase());
    const visibility = rng.weighted([['private', 55], ['internal', 15], ['public', 30]]);
    const archived = rng.bool(0.12);
    const fork = rng.bool(0.06);
    const defaultBranch = rng.weighted([['main', 70], ['master', 22], ['develop', 4], ['trunk', 2], ['release', 2]]);
    const branches = [defaultBranch];
    for (const b of ['develop', 'staging', 'release/2026.09', 'gh-pages']) {
      if (b !== defaultBranch && rng.bool(0.25)) branches.push(b);
    }
    const created = createdTimes[i];
    const pushed = archived
      ? created + Math.floor(rng.float() * (DATASET_NOW - created) * 0.5)
      : created + Math.floor((0.5 + 0.5 * rng.float()) * (DATASET_NOW - created));
    const updated = Math.min(DATASET_NOW, pushed + rng.int(0, 5 * 86400) * 1000);
    const protection = rng.bool(0.6) ? makeProtection(rng, org) : null;
    const ghas = visibility !== 'public' && rng.bool(0.4);
    const topics = rng.sample(TOPICS, rng.int(0, 3));
    const license = visibility === 'public' ? rng.pick(LICENSES) : rng.bool(0.1) ? rng.pick(LICENSES) : null;
    org.repos.push({
      id: repoId,
      name,
      visibility,
      archived,
      fork,
      defaultBranch,
      branches,
      created,
      pushed,
      updated,
      protection,
      description: rng.bool(0.85) ? `${name.replace(/-/g, ' ')} for ${org.name}` : null,
      homepage: visibility === 'public' && rng.bool(0.3) ? `https://${slugify(name)}.${login}.example` : null,
      language: rng.weighted(LANGUAGES),
      size: rng.int(0, 250000),
      stars: visibility === 'public' ? rng.int(0, 3000) : rng.int(0, 15),
      forksCount: visibility === 'public' ? rng.int(0, 400) : rng.int(0, 3),
      openIssues: rng.int(0, 120),
      topics,
      license,
      hasIssues: rng.bool(0.85),
      hasProjects: rng.bool(0.5),
      hasWiki: rng.bool(0.4),
      hasPages: rng.bool(0.05),
      hasDiscussions: rng.bool(0.1),
      isTemplate: rng.bool(0.02),
      webCommitSignoffRequired: rng.bool(0.15),
      allowForking: visibility === 'public' || rng.bool(0.3),
      deleteBranchOnMerge: rng.bool(0.5),
      security: {
        advanced_security: visibility === 'public' ? null : ghas,
        secret_scanning: visibility === 'public' || ghas ? rng.bool(0.85) : false,
        secret_scanning_push_protection: visibility === 'public' || ghas ? rng.bool(0.6) : false,
        dependabot_security_updates: rng.bool(0.55),
      },
    });
  }

  // Organization settings. 2FA requirement is on only when every member has
  // 2FA (GitHub removes non-compliant members when the requirement is enabled).
  const twoFactorDisabled = org.members.filter((m) => m.twoFactor === 'none').length;
  const canCreate = rng.bool(0.6);
  const canPublic = canCreate && rng.bool(0.4);
  const canPrivate = canCreate && rng.bool(0.9);
  const canInternal = canCreate && rng.bool(0.8);
  org.settings = {
    default_repository_permission: rng.weighted([['read', 55], ['none', 20], ['write', 20], ['admin', 5]]),
    members_can_create_repositories: canCreate,
    two_factor_requirement_enabled: twoFactorDisabled === 0,
    members_allowed_repository_creation_type: !canCreate ? 'none' : canPublic ? 'all' : 'private',
    members_can_create_public_repositories: canPublic,
    members_can_create_private_repositories: canPrivate,
    members_can_create_internal_repositories: canInternal,
    members_can_create_pages: rng.bool(0.5),
    members_can_create_public_pages: rng.bool(0.3),
    members_can_create_private_pages: rng.bool(0.6),
    members_can_fork_private_repositories: rng.bool(0.3),
    web_commit_signoff_required: rng.bool(0.3),
    deploy_keys_enabled_for_repositories: rng.bool(0.7),
    dependency_graph_enabled_for_new_repositories: rng.bool(0.8),
    dependabot_alerts_enabled_for_new_repositories: rng.bool(0.7),
    dependabot_security_updates_enabled_for_new_repositories: rng.bool(0.5),
    advanced_security_enabled_for_new_repositories: rng.bool(0.4),
    secret_scanning_enabled_for_new_repositories: rng.bool(0.6),
    secret_scanning_push_protection_enabled_for_new_repositories: rng.bool(0.4),
    secret_scanning_push_protection_custom_link_enabled: false,
    secret_scanning_push_protection_custom_link: null,
  };
  org.profile = {
    description: `${org.name} engineering`,
    company: `${org.name} Inc.`,
    blog: `https://${login}.example`,
    location: rng.pick(['Berlin', 'San Francisco', 'London', 'Singapore', 'Toronto', 'Remote']),
    email: `security@${login}.example`,
    billing_email: `billing@${login}.example`,
    twitter_username: null,
    is_verified: rng.bool(0.7),
    public_gists: 0,
    followers: rng.int(0, 900),
    private_gists: 0,
    collaborators: rng.int(0, 60),
    seats: Math.ceil((memberCount + 50) / 50) * 50,
  };
  return org;
}

// opts: {seed, orgs: [names], members, repos, tokens: [strings]}
function generateDataset(opts = {}) {
  const seed = opts.seed ?? 1;
  const orgNames = opts.orgs && opts.orgs.length ? opts.orgs : ['acme'];
  const tokens = opts.tokens && opts.tokens.length ? opts.tokens : ['sim-token'];
  const members = opts.members ?? 2500;
  const repos = opts.repos ?? 1200;
  // One user per token: token 0 -> "sim-owner" (owner of every org), others -> "sim-user-N".
  const users = tokens.map((t, i) => ({
    token: t,
    login: i === 0 ? 'sim-owner' : `sim-user-${i + 1}`,
    id: 1000 + i,
    createdAt: Date.UTC(2015, 2, 1) + i * 86400000,
  }));
  const usedLogins = new Set(users.map((u) => u.login));
  const ds = { seed, users, orgs: [], orgByLogin: new Map(), orgById: new Map(), repoByKey: new Map(), repoById: new Map() };
  orgNames.forEach((name, i) => {
    const org = generateOrg(seed, name, i, { members, repos }, usedLogins, users[0]);
    ds.orgs.push(org);
    ds.orgByLogin.set(name.toLowerCase(), org);
    ds.orgById.set(org.id, org);
    for (const r of org.repos) {
      r.org = org;
      r.fullName = `${org.login}/${r.name}`;
      ds.repoByKey.set(r.fullName.toLowerCase(), r);
      ds.repoById.set(r.id, r);
    }
  });
  return ds;
}

function summarize(ds) {
  return {
    seed: ds.seed,
    users: ds.users.map((u) => ({ login: u.login, id: u.id })),
    orgs: ds.orgs.map((org) => {
      const count = (arr, f) => arr.reduce((n, x) => n + (f(x) ? 1 : 0), 0);
      return {
        login: org.login,
        id: org.id,
        members: org.members.length,
        admins: count(org.members, (m) => m.role === 'admin'),
        two_factor_disabled: count(org.members, (m) => m.twoFactor === 'none'),
        two_factor_insecure: count(org.members, (m) => m.twoFactor === 'sms'),
        repos: org.repos.length,
        public: count(org.repos, (r) => r.visibility === 'public'),
        private: count(org.repos, (r) => r.visibility === 'private'),
        internal: count(org.repos, (r) => r.visibility === 'internal'),
        archived: count(org.repos, (r) => r.archived),
        forks: count(org.repos, (r) => r.fork),
        protected_default_branches: count(org.repos, (r) => r.protection !== null),
        protection_tiers: {
          basic: count(org.repos, (r) => r.protection && r.protection.tier === 'basic'),
          standard: count(org.repos, (r) => r.protection && r.protection.tier === 'standard'),
          strict: count(org.repos, (r) => r.protection && r.protection.tier === 'strict'),
        },
        two_factor_requirement_enabled: org.settings.two_factor_requirement_enabled,
      };
    }),
  };
}

// ---------------------------------------------------------------------------
// Rendering (GitHub object shapes). `base` is the API root the client used,
// e.g. "http://127.0.0.1:4010"; website URLs stay on github.com.
// ---------------------------------------------------------------------------

function renderSimpleUser(base, login, id, type = 'User') {
  const u = `${base}/users/${login}`;
  return {
    login,
    id,
    node_id: legacyNodeId(type, id),
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    gravatar_id: '',
    url: u,
    html_url: `https://github.com/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type,
    user_view_type: 'public',
    site_admin: false,
  };
}

function renderOrgFull(base, org) {
  const o = `${base}/orgs/${org.login}`;
  const p = org.profile;
  const publicRepos = org.repos.filter((r) => r.visibility === 'public').length;
  const privateRepos = org.repos.length - publicRepos;
  return {
    login: org.login,
    id: org.id,
    node_id: org.nodeId,
    url: o,
    repos_url: `${o}/repos`,
    events_url: `${o}/events`,
    hooks_url: `${o}/hooks`,
    issues_url: `${o}/issues`,
    members_url: `${o}/members{/member}`,
    public_members_url: `${o}/public_members{/member}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${org.id}?v=4`,
    description: p.description,
    name: org.name,
    company: p.company,
    blog: p.blog,
    location: p.location,
    email: p.email,
    twitter_username: p.twitter_username,
    is_verified: p.is_verified,
    has_organization_projects: true,
    has_repository_projects: true,
    public_repos: publicRepos,
    public_gists: p.public_gists,
    followers: p.followers,
    following: 0,
    html_url: `https://github.com/${org.login}`,
    created_at: isoTime(org.createdAt),
    updated_at: isoTime(org.updatedAt),
    archived_at: null,
    type: 'Organization',
    total_private_repos: privateRepos,
    owned_private_repos: privateRepos,
    private_gists: p.private_gists,
    disk_usage: org.repos.reduce((n, r) => n + r.size, 0),
    collaborators: p.collaborators,
    billing_email: p.billing_email,
    plan: { name: 'enterprise', space: 976562499, private_repos: 999999, filled_seats: org.members.length, seats: p.seats },
    ...org.settings,
  };
}

function renderTeam(base, org, t) {
  const u = `${base}/organizations/${org.id}/team/${t.id}`;
  return {
    id: t.id,
    node_id: legacyNodeId('Team', t.id),
    url: u,
    html_url: `https://github.com/orgs/${org.login}/teams/${t.slug}`,
    name: t.name,
    slug: t.slug,
    description: t.description,
    privacy: 'closed',
    notification_setting: 'notifications_enabled',
    permission: 'pull',
    members_url: `${u}/members{/member}`,
    repositories_url: `${u}/repos`,
    parent: null,
  };
}

function statusObj(v) {
  return { status: v ? 'enabled' : 'disabled' };
}

function renderRepo(base, r, full) {
  const org = r.org;
  const a = `${base}/repos/${r.fullName}`;
  const owner = renderSimpleUser(base, org.login, org.id, 'Organization');
  const sec = r.security;
  const security = {};
  if (sec.advanced_security !== null) security.advanced_security = statusObj(sec.advanced_security);
  security.secret_scanning = statusObj(sec.secret_scanning);
  security.secret_scanning_push_protection = statusObj(sec.secret_scanning_push_protection);
  security.dependabot_security_updates = statusObj(sec.dependabot_security_updates);
  const o = {
    id: r.id,
    node_id: legacyNodeId('Repository', r.id),
    name: r.name,
    full_name: r.fullName,
    private: r.visibility !== 'public',
    owner,
    html_url: `https://github.com/${r.fullName}`,
    description: r.description,
    fork: r.fork,
    url: a,
    forks_url: `${a}/forks`,
    keys_url: `${a}/keys{/key_id}`,
    collaborators_url: `${a}/collaborators{/collaborator}`,
    teams_url: `${a}/teams`,
    hooks_url: `${a}/hooks`,
    issue_events_url: `${a}/issues/events{/number}`,
    events_url: `${a}/events`,
    assignees_url: `${a}/assignees{/user}`,
    branches_url: `${a}/branches{/branch}`,
    tags_url: `${a}/tags`,
    blobs_url: `${a}/git/blobs{/sha}`,
    git_tags_url: `${a}/git/tags{/sha}`,
    git_refs_url: `${a}/git/refs{/sha}`,
    trees_url: `${a}/git/trees{/sha}`,
    statuses_url: `${a}/statuses/{sha}`,
    languages_url: `${a}/languages`,
    stargazers_url: `${a}/stargazers`,
    contributors_url: `${a}/contributors`,
    subscribers_url: `${a}/subscribers`,
    subscription_url: `${a}/subscription`,
    commits_url: `${a}/commits{/sha}`,
    git_commits_url: `${a}/git/commits{/sha}`,
    comments_url: `${a}/comments{/number}`,
    issue_comment_url: `${a}/issues/comments{/number}`,
    contents_url: `${a}/contents/{+path}`,
    compare_url: `${a}/compare/{base}...{head}`,
    merges_url: `${a}/merges`,
    archive_url: `${a}/{archive_format}{/ref}`,
    downloads_url: `${a}/downloads`,
    issues_url: `${a}/issues{/number}`,
    pulls_url: `${a}/pulls{/number}`,
    milestones_url: `${a}/milestones{/number}`,
    notifications_url: `${a}/notifications{?since,all,participating}`,
    labels_url: `${a}/labels{/name}`,
    releases_url: `${a}/releases{/id}`,
    deployments_url: `${a}/deployments`,
    created_at: isoTime(r.created),
    updated_at: isoTime(r.updated),
    pushed_at: isoTime(r.pushed),
    git_url: `git://github.com/${r.fullName}.git`,
    ssh_url: `git@github.com:${r.fullName}.git`,
    clone_url: `https://github.com/${r.fullName}.git`,
    svn_url: `https://github.com/${r.fullName}`,
    homepage: r.homepage,
    size: r.size,
    stargazers_count: r.stars,
    watchers_count: r.stars,
    language: r.language,
    has_issues: r.hasIssues,
    has_projects: r.hasProjects,
    has_downloads: true,
    has_wiki: r.hasWiki,
    has_pages: r.hasPages,
    has_discussions: r.hasDiscussions,
    forks_count: r.forksCount,
    mirror_url: null,
    archived: r.archived,
    disabled: false,
    open_issues_count: r.openIssues,
    license: r.license
      ? { ...r.license, url: r.license.key === 'other' ? null : `${base}/licenses/${r.license.key}`, node_id: legacyNodeId('License', r.license.key) }
      : null,
    allow_forking: r.allowForking,
    is_template: r.isTemplate,
    web_commit_signoff_required: r.webCommitSignoffRequired,
    topics: r.topics,
    visibility: r.visibility,
    forks: r.forksCount,
    open_issues: r.openIssues,
    watchers: r.stars,
    default_branch: r.defaultBranch,
    permissions: { admin: true, maintain: true, push: true, triage: true, pull: true },
    security_and_analysis: security,
  };
  if (full) {
    Object.assign(o, {
      temp_clone_token: '',
      allow_squash_merge: true,
      allow_merge_commit: !r.protection || !r.protection.linearHistory,
      allow_rebase_merge: true,
      allow_auto_merge: false,
      delete_branch_on_merge: r.deleteBranchOnMerge,
      allow_update_branch: false,
      use_squash_pr_title_as_default: false,
      squash_merge_commit_message: 'COMMIT_MESSAGES',
      squash_merge_commit_title: 'COMMIT_OR_PR_TITLE',
      merge_commit_message: 'PR_TITLE',
      merge_commit_title: 'MERGE_MESSAGE',
      custom_properties: {},
      organization: owner,
      network_count: r.forksCount,
      subscribers_count: Math.min(r.stars, 50) + 1,
    });
  }
  return o;
}

function renderProtection(base, r, branch) {
  const p = r.protection;
  const org = r.org;
  const url = `${base}/repos/${r.fullName}/branches/${branch}/protection`;
  const o = { url };
  if (p.statusChecks) {
    o.required_status_checks = {
      url: `${url}/required_status_checks`,
      strict: p.statusChecks.strict,
      contexts: p.statusChecks.contexts,
      contexts_url: `${url}/required_status_checks/contexts`,
      checks: p.statusChecks.contexts.map((c) => ({ context: c, app_id: null })),
    };
  }
  o.required_signatures = { url: `${url}/required_signatures`, enabled: p.signatures };
  o.enforce_admins = { url: `${url}/enforce_admins`, enabled: p.enforceAdmins };
  if (p.reviews) {
    const rv = {
      url: `${url}/required_pull_request_reviews`,
      dismiss_stale_reviews: p.reviews.dismissStale,
      require_code_owner_reviews: p.reviews.codeOwners,
      required_approving_review_count: p.reviews.count,
      require_last_push_approval: p.reviews.lastPush,
    };
    if (p.reviews.dismissalTeams.length) {
      rv.dismissal_restrictions = {
        url: `${url}/dismissal_restrictions`,
        users_url: `${url}/dismissal_restrictions/users`,
        teams_url: `${url}/dismissal_restrictions/teams`,
        users: [],
        teams: p.reviews.dismissalTeams.map((t) => renderTeam(base, org, t)),
        apps: [],
      };
    }
    o.required_pull_request_reviews = rv;
  }
  if (p.restrictions) {
    o.restrictions = {
      url: `${url}/restrictions`,
      users_url: `${url}/restrictions/users`,
      teams_url: `${url}/restrictions/teams`,
      apps_url: `${url}/restrictions/apps`,
      users: [],
      teams: p.restrictions.teams.map((t) => renderTeam(base, org, t)),
      apps: [],
    };
  }
  o.required_linear_history = { enabled: p.linearHistory };
  o.allow_force_pushes = { enabled: p.allowForcePushes };
  o.allow_deletions = { enabled: p.allowDeletions };
  o.block_creations = { enabled: p.blockCreations };
  o.required_conversation_resolution = { enabled: p.conversationResolution };
  o.lock_branch = { enabled: p.lockBranch };
  o.allow_fork_syncing = { enabled: p.allowForkSyncing };
  return o;
}

function renderPrivateUser(base, user, ds) {
  const o = renderSimpleUser(base, user.login, user.id);
  return {
    ...o,
    name: user.login === 'sim-owner' ? 'Simulator Owner' : `Simulator User ${user.id - 999}`,
    company: ds.orgs.length ? `@${ds.orgs[0].login}` : null,
    blog: '',
    location: null,
    email: null,
    hireable: null,
    bio: null,
    twitter_username: null,
    notification_email: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: isoTime(user.createdAt),
    updated_at: isoTime(DATASET_NOW - 86400000),
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: true,
    plan: { name: 'free', space: 976562499, collaborators: 0, private_repos: 10000 },
  };
}

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------

function errorBody(message, doc, status, extra) {
  return Buffer.from(JSON.stringify({ message, ...(extra || {}), documentation_url: doc, status: String(status) }));
}

const MEMBER_FILTERS = new Set(['all', '2fa_disabled', '2fa_insecure']);
const MEMBER_ROLES = new Set(['all', 'admin', 'member']);
const REPO_TYPES = new Set(['all', 'public', 'private', 'forks', 'sources', 'member']);
const REPO_SORTS = new Set(['created', 'updated', 'pushed', 'full_name']);

function validationFailed(field, resource) {
  return {
    status: 422,
    body: errorBody('Validation Failed', DOCS.root, 422, { errors: [{ resource, field, code: 'invalid' }] }),
  };
}

function parsePositiveInt(v) {
  if (v === null || v === undefined || v === '') return NaN;
  if (!/^\d+$/.test(v)) return NaN;
  return parseInt(v, 10);
}

// opts: dataset options plus {rateLimit, rateLimitStatus (403|429), plainLinks}
function createGithubProvider(opts = {}) {
  const ds = generateDataset(opts);
  const rateLimit = opts.rateLimit ?? 5000;
  const rateLimitStatus = opts.rateLimitStatus ?? 403;
  const plainLinks = !!opts.plainLinks;
  const userByToken = new Map(ds.users.map((u) => [u.token, u]));
  const instance = crypto.randomBytes(2).toString('hex').toUpperCase();
  let requestCounter = 0;

  // ---- primary rate-limit budgets: one per token, plus one per client address for anonymous calls
  const buckets = new Map();
  function bucketFor(key, limit) {
    let b = buckets.get(key);
    const now = Math.floor(Date.now() / 1000);
    if (!b) {
      b = { limit, used: 0, reset: now + WINDOW_SECONDS };
      buckets.set(key, b);
    } else if (now >= b.reset) {
      b.used = 0;
      b.reset = now + WINDOW_SECONDS;
    }
    return b;
  }

  function nextRequestId() {
    requestCounter++;
    return `${instance}:${(requestCounter >>> 0).toString(16).toUpperCase()}:${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}`;
  }

  function rateHeaders(h, b) {
    h.push(
      'x-ratelimit-limit', String(b.limit),
      'x-ratelimit-remaining', String(Math.max(0, b.limit - b.used)),
      'x-ratelimit-reset', String(b.reset),
      'x-ratelimit-used', String(b.used),
      'x-ratelimit-resource', 'core',
    );
  }

  function baseHeaders(b, requestId) {
    const h = [
      'content-type', 'application/json; charset=utf-8',
      'x-github-api-version-selected', API_VERSION,
      'x-github-media-type', 'github.v3; format=json',
    ];
    rateHeaders(h, b);
    h.push('x-github-request-id', requestId);
    return h;
  }

  // ---- auth
  function tokenFromHeader(h) {
    if (!h) return null;
    const sp = h.indexOf(' ');
    if (sp < 0) return '';
    const scheme = h.slice(0, sp).toLowerCase();
    const rest = h.slice(sp + 1).trim();
    if (scheme === 'bearer' || scheme === 'token') return rest;
    if (scheme === 'basic') {
      const dec = Buffer.from(rest, 'base64').toString('utf8');
      const c = dec.indexOf(':');
      return c >= 0 ? dec.slice(c + 1) : '';
    }
    return '';
  }

  // Key used by stats and fault matching: the configured token, "(none)" or "(invalid)".
  function tokenKey(req) {
    const t = tokenFromHeader(req.headers.authorization);
    if (t === null) return '(none)';
    return userByToken.has(t) ? t : '(invalid)';
  }

  function clientBucket(req, token) {
    const user = token ? userByToken.get(token) : undefined;
    if (user) return bucketFor(`token:${user.token}`, rateLimit);
    return bucketFor(`ip:${req.socket.remoteAddress}`, ANON_LIMIT);
  }

  // ---- response cache (per API base + request URL), for successful GETs only
  const cache = new Map();
  let cacheBytes = 0;
  function cachePut(key, entry) {
    if (cacheBytes + entry.body.length > CACHE_MAX_BYTES) {
      cache.clear();
      cacheBytes = 0;
    }
    cache.set(key, entry);
    cacheBytes += entry.body.length;
  }
  function okEntry(obj, link) {
    const body = Buffer.from(JSON.stringify(obj));
    const etag = `W/"${crypto.createHash('sha256').update(body).digest('hex').slice(0, 40)}"`;
    return { status: 200, body, etag, link: link || null };
  }

  // ---- precomputed, sorted/filtered views
  const memberViews = new Map(); // org.id|filter|role -> member[]
  function membersView(org, filter, role) {
    const key = `${org.id}|${filter}|${role}`;
    let v = memberViews.get(key);
    if (!v) {
      v = org.members.filter((m) => {
        if (filter === '2fa_disabled' && m.twoFactor !== 'none') return false;
        if (filter === '2fa_insecure' && m.twoFactor !== 'sms') return false;
        if (role !== 'all' && m.role !== role) return false;
        return true;
      });
      memberViews.set(key, v);
    }
    return v;
  }
  const repoViews = new Map();
  function reposView(org, type, sort, direction) {
    const key = `${org.id}|${type}|${sort}|${direction}`;
    let v = repoViews.get(key);
    if (!v) {
      v = org.repos.filter((r) => {
        if (type === 'public') return r.visibility === 'public';
        if (type === 'private') return r.visibility !== 'public';
        if (type === 'forks') return r.fork;
        if (type === 'sources') return !r.fork;
        return true;
      });
      const field = { created: 'created', updated: 'updated', pushed: 'pushed' }[sort];
      if (field) v.sort((a, b) => a[field] - b[field] || a.id - b.id);
      else v.sort((a, b) => (a.fullName.toLowerCase() < b.fullName.toLowerCase() ? -1 : 1));
      if (direction === 'desc') v.reverse();
      repoViews.set(key, v);
    }
    return v;
  }

  // ---- pagination (GitHub style: page/per_page, RFC 8288 Link header)
  function paginate(items, q) {
    let perPage = parsePositiveInt(q.get('per_page'));
    if (!(perPage >= 1)) perPage = DEFAULT_PER_PAGE;
    if (perPage > MAX_PER_PAGE) perPage = MAX_PER_PAGE;
    let page = parsePositiveInt(q.get('page'));
    if (!(page >= 1)) page = 1;
    const lastPage = Math.max(1, Math.ceil(items.length / perPage));
    const slice = items.slice((page - 1) * perPage, page * perPage);
    return { page, perPage, lastPage, slice };
  }
  function linkHeader(linkBase, q, page, lastPage) {
    if (lastPage <= 1 && page <= 1) return null;
    const mk = (p) => {
      const qq = new URLSearchParams(q);
      qq.set('page', String(p));
      return `<${linkBase}?${qq.toString()}>`;
    };
    const parts = [];
    if (page > 1) parts.push(`${mk(page - 1)}; rel="prev"`);
    if (page < lastPage) {
      parts.push(`${mk(page + 1)}; rel="next"`);
      parts.push(`${mk(lastPage)}; rel="last"`);
    }
    if (page > 1) parts.push(`${mk(1)}; rel="first"`);
    return parts.join(', ');
  }
  function cleanQuery(search) {
    const q = new URLSearchParams(search);
    // simulator control parameters never leak into Link URLs
    for (const k of [...q.keys()]) if (k.startsWith('_sim_')) q.delete(k);
    return q;
  }

  // ---- routing
  const notFound = (doc = DOCS.root) => ({ status: 404, body: errorBody('Not Found', doc, 404) });

  function findOrg(segment, byId) {
    if (byId) {
      const id = parsePositiveInt(segment);
      return Number.isFinite(id) ? ds.orgById.get(id) : undefined;
    }
    return ds.orgByLogin.get(segment.toLowerCase());
  }

  function listMembers(base, org, search) {
    const q = cleanQuery(search);
    const filter = q.get('filter') ?? 'all';
    const role = q.get('role') ?? 'all';
    if (!MEMBER_FILTERS.has(filter)) return validationFailed('filter', 'Member');
    if (!MEMBER_ROLES.has(role)) return validationFailed('role', 'Member');
    const view = membersView(org, filter, role);
    const pg = paginate(view, q);
    const linkBase = plainLinks ? `${base}/orgs/${org.login}/members` : `${base}/organizations/${org.id}/members`;
    const list = pg.slice.map((m) => renderSimpleUser(base, m.login, m.id));
    return okEntry(list, linkHeader(linkBase, q, pg.page, pg.lastPage));
  }

  function listRepos(base, org, search) {
    const q = cleanQuery(search);
    const type = q.get('type') ?? 'all';
    const sort = q.get('sort') ?? 'created';
    if (!REPO_TYPES.has(type)) return validationFailed('type', 'Repository');
    if (!REPO_SORTS.has(sort)) return validationFailed('sort', 'Repository');
    const direction = q.get('direction') ?? (sort === 'full_name' ? 'asc' : 'desc');
    if (direction !== 'asc' && direction !== 'desc') return validationFailed('direction', 'Repository');
    const view = reposView(org, type, sort, direction);
    const pg = paginate(view, q);
    const linkBase = plainLinks ? `${base}/orgs/${org.login}/repos` : `${base}/organizations/${org.id}/repos`;
    const list = pg.slice.map((r) => renderRepo(base, r, false));
    return okEntry(list, linkHeader(linkBase, q, pg.page, pg.lastPage));
  }

  // ---- token exchanges: GitHub App installation tokens and OAuth client credentials
  const appKey = opts.appKeyFile ? crypto.createPublicKey(fs.readFileSync(opts.appKeyFile)) : null;
  const clientKey = opts.clientKeyFile ? crypto.createPublicKey(fs.readFileSync(opts.clientKeyFile)) : null;
  const bearerKey = opts.bearerKeyFile ? crypto.createPublicKey(fs.readFileSync(opts.bearerKeyFile)) : null;
  const exchangeCounts = {
    github_app: 0,
    github_app_refused: 0,
    client_credentials: 0,
    client_credentials_refused: 0,
    refresh_token: 0,
    refresh_token_refused: 0,
    jwt_bearer: 0,
    jwt_bearer_refused: 0,
  };
  // refresh_token grant: the one refresh token that works now (rotated by each refresh).
  let currentRefresh = opts.refreshToken;
  const exchangeUser = ds.users[0];

  function b64urlJson(part) {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  }

  // RS256 compact JWS: returns {claims} or {error}.
  function verifyJwt(token, key) {
    const parts = typeof token === 'string' ? token.split('.') : [];
    if (parts.length !== 3 || !key) return { error: 'decode' };
    let header;
    let claims;
    try {
      header = b64urlJson(parts[0]);
      claims = b64urlJson(parts[1]);
    } catch (e) {
      return { error: 'decode' };
    }
    if (!header || header.alg !== 'RS256' || !claims || typeof claims !== 'object') return { error: 'decode' };
    const ok = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'));
    if (!ok) return { error: 'decode' };
    return { claims, header };
  }

  const exchanged = new Set();
  // Lifetime of the access tokens /oauth/token hands out (client credentials,
  // refresh token, Google-style JWT bearer); POST /_sim/token_ttl changes it,
  // POST /_sim/reset restores --client-token-ttl.
  let tokenTtl = opts.clientTokenTtl;
  // Every exchanged token's life: {n, grant, expiresIn, expiresAt (ms, null:
  // never), uses, expiredUses}. `issued` lists those since the last reset.
  const tokenLife = new Map();
  let issued = [];
  function registerToken(token, grant, expiresIn) {
    userByToken.set(token, exchangeUser);
    exchanged.add(token);
    const rec = {
      n: issued.length + 1,
      grant,
      expiresIn: expiresIn ?? null,
      expiresAt: expiresIn === undefined || expiresIn === null ? null : Date.now() + expiresIn * 1000,
      uses: 0,
      expiredUses: 0,
    };
    tokenLife.set(token, rec);
    issued.push(rec);
  }
  // An exchanged token used after its expiry is refused as GitHub refuses an
  // expired one (401 Bad credentials) and counted: 1 when refused.
  function expiredUse(token) {
    const rec = tokenLife.get(token);
    if (!rec) return 0;
    if (rec.expiresAt !== null && Date.now() >= rec.expiresAt) {
      rec.expiredUses++;
      return 1;
    }
    rec.uses++;
    return 0;
  }

  function jsonResponse(status, obj, extra) {
    const body = Buffer.from(JSON.stringify(obj));
    const h = ['content-type', 'application/json; charset=utf-8', 'cache-control', 'no-store', 'content-length', String(body.length)];
    if (extra) h.push(...extra);
    return { status, headers: h, body };
  }

  function installationToken(req, id) {
    const now = Math.floor(Date.now() / 1000);
    const auth = req.headers.authorization || '';
    const m = /^Bearer (.+)$/i.exec(auth);
    const refuse = (message) => {
      exchangeCounts.github_app_refused++;
      return jsonResponse(401, { message, documentation_url: DOCS.root, status: '401' });
    };
    if (!m) return refuse('A JSON web token could not be decoded');
    const v = verifyJwt(m[1].trim(), appKey);
    if (v.error) return refuse('A JSON web token could not be decoded');
    const c = v.claims;
    if (!Number.isInteger(c.exp) || c.exp <= now || !Number.isInteger(c.iat) || c.exp - c.iat > 600) {
      return refuse("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
    }
    if (c.iat > now + 60) return refuse("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued");
    if (opts.appId !== undefined && String(c.iss) !== String(opts.appId)) return refuse('Integration not found');
    exchangeCounts.github_app++;
    const token = `ghs_${crypto.randomBytes(18).toString('hex')}`;
    const ttl = opts.installationTokenTtl ?? 3600;
    registerToken(token, 'github_app', ttl);
    return jsonResponse(201, {
      token,
      expires_at: isoTime(Date.now() + ttl * 1000),
      permissions: { members: 'read', administration: 'read', metadata: 'read' },
      repository_selection: 'all',
      installation_id: Number(id),
    });
  }

  function clientCredentials(req, bodyText) {
    const form = new URLSearchParams(bodyText);
    const refuse = (status, error, description) => {
      exchangeCounts.client_credentials_refused++;
      return jsonResponse(status, { error, error_description: description });
    };
    const grant = form.get('grant_type');
    if (grant === JWT_BEARER_GRANT) return jwtBearerGrant(req, form);
    if (grant !== 'client_credentials' && grant !== 'refresh_token') return refuse(400, 'unsupported_grant_type', 'grant_type must be client_credentials, refresh_token or jwt-bearer');
    if (grant === 'refresh_token') return refreshGrant(req, form);
    const auth = req.headers.authorization || '';
    const basic = /^Basic (.+)$/i.exec(auth);
    if (basic) {
      const dec = Buffer.from(basic[1].trim(), 'base64').toString('utf8');
      const i = dec.indexOf(':');
      const unform = (x) => decodeURIComponent(x.replace(/\+/g, ' '));
      let id;
      let secret;
      try {
        id = unform(dec.slice(0, i));
        secret = unform(dec.slice(i + 1));
      } catch (e) {
        return refuse(401, 'invalid_client', 'Client authentication failed');
      }
      if (i < 0 || opts.clientSecret === undefined || id !== opts.clientId || secret !== opts.clientSecret) {
        return refuse(401, 'invalid_client', 'Client authentication failed');
      }
    } else if (form.get('client_assertion_type') === 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      const v = verifyJwt(form.get('client_assertion'), clientKey);
      const now = Math.floor(Date.now() / 1000);
      const c = v.claims;
      const aud = `${apiBase(req)}/oauth/token`;
      const audOk = c && (c.aud === aud || (Array.isArray(c.aud) && c.aud.includes(aud)));
      if (v.error || !audOk || c.iss !== opts.clientId || c.sub !== opts.clientId || !Number.isInteger(c.exp) || c.exp <= now) {
        return refuse(401, 'invalid_client', 'Client assertion is not valid');
      }
      if (form.get('client_id') && form.get('client_id') !== opts.clientId) return refuse(401, 'invalid_client', 'client_id does not match the assertion');
      if (opts.clientKeyId !== undefined && v.header.kid !== opts.clientKeyId) return refuse(401, 'invalid_client', 'Client assertion kid does not name a registered key');
    } else {
      return refuse(401, 'invalid_client', 'Client authentication required');
    }
    exchangeCounts.client_credentials++;
    const token = `sim_cc_${crypto.randomBytes(18).toString('hex')}`;
    const out = { access_token: token, expires_in: tokenTtl ?? 3600, token_type: 'Bearer' };
    registerToken(token, 'client_credentials', out.expires_in);
    if (form.get('scope')) out.scope = form.get('scope');
    return jsonResponse(200, out);
  }

  // grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523): the
  // assertion is verified with --bearer-key-file. A Google-style assertion
  // (with a scope claim) must name this token URL as aud and gets expires_in; a
  // Salesforce-style one (no scope) must name --bearer-audience and gets
  // instance_url and no expires_in, as Salesforce answers.
  const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
  function jwtBearerGrant(req, form) {
    const refuse = (error, description) => {
      exchangeCounts.jwt_bearer_refused++;
      return jsonResponse(401, { error, error_description: description });
    };
    const now = Math.floor(Date.now() / 1000);
    const v = verifyJwt(form.get('assertion'), bearerKey);
    if (v.error) return refuse('invalid_grant', 'Invalid JWT Signature.');
    const c = v.claims;
    const google = typeof c.scope === 'string';
    const tokenUrl = `${apiBase(req)}/oauth/token`;
    const audOk = google ? c.aud === tokenUrl : opts.bearerAudience !== undefined && c.aud === opts.bearerAudience;
    if (!audOk) return refuse('invalid_grant', 'Invalid JWT: audience');
    if (typeof c.iss !== 'string' || !c.iss) return refuse('invalid_grant', 'Invalid JWT: iss');
    if (opts.bearerIssuer !== undefined && !opts.bearerIssuer.split(',').includes(c.iss)) return refuse('invalid_client', 'Invalid issuer');
    if (!google && (typeof c.sub !== 'string' || !c.sub)) return refuse('invalid_grant', 'Invalid JWT: sub');
    if (!Number.isInteger(c.exp) || c.exp <= now) return refuse('invalid_grant', 'Invalid JWT: expired');
    const iat = c.iat === undefined && !google ? now : c.iat;
    if (!Number.isInteger(iat) || c.exp - iat > 3600 || iat > now + 60) return refuse('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.');
    exchangeCounts.jwt_bearer++;
    const token = `sim_jb_${crypto.randomBytes(18).toString('hex')}`;
    registerToken(token, 'jwt_bearer', google ? tokenTtl ?? 3599 : null);
    if (google) return jsonResponse(200, { access_token: token, expires_in: tokenTtl ?? 3599, token_type: 'Bearer' });
    return jsonResponse(200, {
      access_token: token,
      scope: 'api',
      instance_url: apiBase(req),
      id: `${apiBase(req)}/id/00D000000000001/005000000000001`,
      token_type: 'Bearer',
    });
  }

  // grant_type=refresh_token: client_secret_basic, or client_id in the form for a
  // client without a secret. Each refresh rotates the refresh token.
  function refreshGrant(req, form) {
    const refuse = (status, error) => {
      exchangeCounts.refresh_token_refused++;
      return jsonResponse(status, { error });
    };
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization || '');
    if (basic) {
      const dec = Buffer.from(basic[1].trim(), 'base64').toString('utf8');
      const i = dec.indexOf(':');
      let id;
      let secret;
      try {
        id = decodeURIComponent(dec.slice(0, i).replace(/\+/g, ' '));
        secret = decodeURIComponent(dec.slice(i + 1).replace(/\+/g, ' '));
      } catch (e) {
        return refuse(401, 'invalid_client');
      }
      if (i < 0 || opts.clientSecret === undefined || id !== opts.clientId || secret !== opts.clientSecret) return refuse(401, 'invalid_client');
    } else if (opts.clientSecret !== undefined || form.get('client_id') !== opts.clientId) {
      return refuse(401, 'invalid_client');
    }
    const rt = form.get('refresh_token');
    if (!currentRefresh || !rt || rt !== currentRefresh) return refuse(400, 'invalid_grant');
    exchangeCounts.refresh_token++;
    const token = `sim_at_${crypto.randomBytes(18).toString('hex')}`;
    currentRefresh = `sim_rt_${crypto.randomBytes(18).toString('hex')}`;
    const out = { access_token: token, expires_in: tokenTtl ?? 3600, token_type: 'Bearer', refresh_token: currentRefresh };
    registerToken(token, 'refresh_token', out.expires_in);
    if (form.get('scope')) out.scope = form.get('scope');
    return jsonResponse(200, out);
  }

  // POST endpoints that read a body; null when `pathname` is not one.
  function exchangePath(method, pathname) {
    if (method !== 'POST') return null;
    const m = /^\/app\/installations\/([^/]+)\/access_tokens$/.exec(pathname);
    if (m) return { kind: 'github_app', id: m[1] };
    if (pathname === '/oauth/token') return { kind: 'client_credentials' };
    return null;
  }

  function exchange(req, which, bodyText) {
    if (which.kind === 'github_app') {
      if (!/^\d+$/.test(which.id)) return jsonResponse(404, { message: 'Not Found', documentation_url: DOCS.installationToken, status: '404' });
      return installationToken(req, which.id);
    }
    return clientCredentials(req, bodyText);
  }

  // Returns an entry {status, body, etag?, link?, cacheable?} for an authenticated GET.
  function route(base, parts, search) {
    // parts[0] === '' (leading slash)
    const n = parts.length;
    const a = parts[1];
    if (a === 'orgs' || a === 'organizations') {
      const byId = a === 'organizations';
      if (n === 3 && !byId) {
        const org = findOrg(decodeSeg(parts[2]), false);
        if (!org) return notFound(DOCS.getOrg);
        return okEntry(renderOrgFull(base, org));
      }
      if (n === 4) {
        const org = findOrg(decodeSeg(parts[2]), byId);
        if (parts[3] === 'members') return org ? listMembers(base, org, search) : notFound(DOCS.listMembers);
        if (parts[3] === 'repos') return org ? listRepos(base, org, search) : notFound(DOCS.listRepos);
      }
      return notFound();
    }
    if (a === 'repos' && n >= 4) {
      const repo = ds.repoByKey.get(`${decodeSeg(parts[2])}/${decodeSeg(parts[3])}`.toLowerCase());
      if (n === 4) return repo ? okEntry(renderRepo(base, repo, true)) : notFound(DOCS.getRepo);
      // /repos/{owner}/{repo}/branches/{branch...}/protection (branch names may contain '/')
      if (n >= 7 && parts[4] === 'branches' && parts[n - 1] === 'protection') {
        if (!repo) return notFound(DOCS.getProtection);
        const branch = parts.slice(5, n - 1).map(decodeSeg).join('/');
        if (!repo.branches.includes(branch)) {
          return { status: 404, body: errorBody('Branch not found', DOCS.getProtection, 404) };
        }
        if (branch !== repo.defaultBranch || !repo.protection) {
          return { status: 404, body: errorBody('Branch not protected', DOCS.getProtection, 404) };
        }
        return okEntry(renderProtection(base, repo, branch));
      }
      return notFound();
    }
    if (a === 'repositories' && n === 3) {
      const id = parsePositiveInt(parts[2]);
      const repo = Number.isFinite(id) ? ds.repoById.get(id) : undefined;
      return repo ? okEntry(renderRepo(base, repo, true)) : notFound(DOCS.getRepo);
    }
    return notFound();
  }

  function decodeSeg(s) {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  }

  function rateLimitBody(b) {
    const now = Math.floor(Date.now() / 1000);
    const core = { limit: b.limit, used: b.used, remaining: Math.max(0, b.limit - b.used), reset: b.reset };
    const fixed = (limit, window) => ({ limit, used: 0, remaining: limit, reset: now + window });
    return {
      resources: {
        core,
        search: fixed(30, 60),
        graphql: fixed(b.limit, WINDOW_SECONDS),
        integration_manifest: fixed(5000, WINDOW_SECONDS),
        source_import: fixed(100, 60),
        code_scanning_upload: fixed(1000, WINDOW_SECONDS),
        actions_runner_registration: fixed(10000, WINDOW_SECONDS),
        scim: fixed(15000, WINDOW_SECONDS),
        dependency_snapshots: fixed(100, 60),
        audit_log: fixed(1750, WINDOW_SECONDS),
        code_search: fixed(10, 60),
      },
      rate: core,
    };
  }

  function apiBase(req) {
    let host = req.headers.host;
    if (!host || !/^[A-Za-z0-9.\-:[\]]{1,255}$/.test(host)) {
      const addr = req.socket.localAddress || '127.0.0.1';
      host = `${addr.includes(':') ? `[${addr}]` : addr}:${req.socket.localPort}`;
    }
    const proto = req.headers['x-forwarded-proto'] === 'https' ? 'https' : 'http';
    return `${proto}://${host}`;
  }

  // info: {method, url, pathname, search, consume}
  // Returns {status, headers (flat array), body (Buffer|null)}.
  function respond(req, info) {
    const requestId = nextRequestId();
    const token = tokenFromHeader(req.headers.authorization);
    const user = token ? userByToken.get(token) : undefined;
    const b = clientBucket(req, token);
    const pathname = info.pathname;

    const finish = (status, body, extraHeaders) => {
      const h = baseHeaders(b, requestId);
      if (extraHeaders) h.push(...extraHeaders);
      if (body) h.push('content-length', String(body.length));
      return { status, headers: h, body };
    };

    // GET /rate_limit works without credentials and never counts against the limit.
    if (pathname === '/rate_limit' && info.method === 'GET' && (token === null || user)) {
      return finish(200, Buffer.from(JSON.stringify(rateLimitBody(b))), ['cache-control', 'no-cache']);
    }
    if (token === null) {
      if (info.consume) b.used = Math.min(b.limit, b.used + 1);
      return finish(401, errorBody('Requires authentication', DOCS.root, 401));
    }
    if (!user || expiredUse(token)) {
      if (info.consume) b.used = Math.min(b.limit, b.used + 1);
      return finish(401, errorBody('Bad credentials', DOCS.root, 401));
    }
    if (b.used >= b.limit) {
      return finish(
        rateLimitStatus,
        errorBody(`API rate limit exceeded for user ID ${user.id}.`, DOCS.primary, rateLimitStatus),
      );
    }
    if (info.method !== 'GET' && info.method !== 'HEAD') {
      if (info.consume) b.used++;
      return finish(404, errorBody('Not Found', DOCS.root, 404));
    }

    let entry;
    if (pathname === '/user') {
      entry = okEntry(renderPrivateUser(apiBase(req), user, ds));
    } else {
      const base = apiBase(req);
      const key = `${base}\n${pathname}?${info.search}`;
      entry = cache.get(key);
      if (!entry) {
        entry = route(base, pathname.split('/'), info.search);
        if (entry.status === 200) cachePut(key, entry);
      }
    }

    // Conditional requests answered with 304 do not count against the primary limit.
    const inm = req.headers['if-none-match'];
    if (entry.etag && inm && (inm === entry.etag || inm === entry.etag.slice(2) || inm === '*')) {
      const h = baseHeaders(b, requestId);
      h.push('etag', entry.etag, 'cache-control', 'private, max-age=60, s-maxage=60');
      return { status: 304, headers: h, body: null };
    }
    if (info.consume) b.used++;
    const extra = [];
    if (entry.status === 200) {
      extra.push('cache-control', 'private, max-age=60, s-maxage=60', 'vary', 'Accept, Authorization, Cookie, X-GitHub-OTP', 'etag', entry.etag);
      extra.push('x-oauth-scopes', 'admin:org, read:org, repo', 'x-accepted-oauth-scopes', pathname.startsWith('/repos') ? 'repo' : 'read:org');
      if (entry.link) extra.push('link', entry.link);
    }
    return finish(entry.status, entry.body, extra);
  }

  // Headers for an injected fault response: current budget (not consumed) and a request id.
  function faultHeaders(req) {
    const token = tokenFromHeader(req.headers.authorization);
    const b = clientBucket(req, token);
    const requestId = nextRequestId();
    return { headers: baseHeaders(b, requestId), requestId };
  }

  function secondaryLimitBody(requestId, status = 403) {
    return errorBody(
      `You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID ${requestId}.`,
      DOCS.secondary,
      status,
    );
  }

  // Representative list items for synthetic bodies (huge responses).
  function sampleItems(req, n = 100) {
    const base = apiBase(req);
    const org = ds.orgs[0];
    const out = [];
    if (org && org.members.length) {
      for (let i = 0; i < n; i++) {
        const m = org.members[i % org.members.length];
        out.push(renderSimpleUser(base, m.login, m.id));
      }
    } else {
      for (let i = 0; i < n; i++) out.push(renderSimpleUser(base, `user-${i}`, 5000 + i));
    }
    return out;
  }

  // Route template for stats ("GET /orgs/{org}/members") and the canonical
  // /orgs/{login}/... path for /organizations/{id}/... (used by fault matching).
  function describe(method, pathname) {
    const parts = pathname.split('/');
    const n = parts.length;
    let template = 'unknown';
    let canonical = pathname;
    if (pathname === '/user' || pathname === '/rate_limit') template = pathname;
    else if (parts[1] === 'orgs' && n === 3) template = '/orgs/{org}';
    else if ((parts[1] === 'orgs' || parts[1] === 'organizations') && n === 4 && (parts[3] === 'members' || parts[3] === 'repos')) {
      template = `/orgs/{org}/${parts[3]}`;
      if (parts[1] === 'organizations') {
        const org = findOrg(parts[2], true);
        if (org) canonical = `/orgs/${org.login}/${parts[3]}`;
      }
    } else if (parts[1] === 'repos' && n === 4) template = '/repos/{owner}/{repo}';
    else if (parts[1] === 'repos' && n >= 7 && parts[4] === 'branches' && parts[n - 1] === 'protection') {
      template = '/repos/{owner}/{repo}/branches/{branch}/protection';
    } else if (parts[1] === 'repositories' && n === 3) template = '/repositories/{id}';
    return { route: `${method} ${template}`, canonical };
  }

  return {
    name: 'github',
    dataset: ds,
    summary: () => summarize(ds),
    respond,
    exchangePath,
    exchange,
    exchangeStats: () => ({ ...exchangeCounts }),
    // Every token handed out by an exchange stops working (401 Bad credentials).
    revokeExchanged() {
      for (const t of exchanged) userByToken.delete(t);
      const n = exchanged.size;
      exchanged.clear();
      return n;
    },
    resetExchanges() {
      for (const k of Object.keys(exchangeCounts)) exchangeCounts[k] = 0;
      issued = [];
      tokenTtl = opts.clientTokenTtl;
    },
    // Every exchanged token since the last reset, in the order of issue, without
    // the token itself: {n, grant, expires_in, uses, expired_uses, live}.
    tokenStats() {
      const now = Date.now();
      return issued.map((r) => ({
        n: r.n,
        grant: r.grant,
        expires_in: r.expiresIn,
        uses: r.uses,
        expired_uses: r.expiredUses,
        live: r.expiresAt === null || now < r.expiresAt,
      }));
    },
    // The lifetime (seconds, a positive integer; null: the default) of the
    // tokens /oauth/token hands out from now on.
    setTokenTtl(seconds) {
      if (seconds !== null && (!Number.isInteger(seconds) || seconds < 1 || seconds > 86400)) {
        throw new Error('seconds must be an integer from 1 to 86400, or null');
      }
      tokenTtl = seconds === null ? opts.clientTokenTtl : seconds;
      return { seconds: tokenTtl ?? null };
    },
    // Every exchanged token expires now: from now on each use answers 401 Bad
    // credentials and counts as an expired use.
    expireExchanged() {
      const now = Date.now();
      let n = 0;
      for (const rec of tokenLife.values()) {
        if (rec.expiresAt === null || rec.expiresAt > now) {
          rec.expiresAt = now;
          n++;
        }
      }
      return n;
    },
    // The refresh-token grant starts over from --refresh-token (or T when given).
    resetRefreshToken(t) {
      currentRefresh = t || opts.refreshToken;
    },
    tokenKey,
    faultHeaders,
    secondaryLimitBody,
    sampleItems,
    describe,
    resetBudgets() {
      buckets.clear();
    },
    // spec: {token?, limit?, remaining?, reset_in_seconds?}; without token: every configured token.
    setBudget(spec) {
      const targets = spec.token ? [spec.token] : ds.users.map((u) => u.token);
      const out = {};
      for (const t of targets) {
        if (!userByToken.has(t)) throw new Error(`unknown token: ${t}`);
        const b = bucketFor(`token:${t}`, rateLimit);
        if (Number.isInteger(spec.limit) && spec.limit >= 0) b.limit = spec.limit;
        if (Number.isInteger(spec.remaining) && spec.remaining >= 0) b.used = Math.max(0, b.limit - spec.remaining);
        if (Number.isInteger(spec.reset_in_seconds) && spec.reset_in_seconds >= 0) {
          b.reset = Math.floor(Date.now() / 1000) + spec.reset_in_seconds;
        }
        out[t] = { limit: b.limit, used: b.used, remaining: Math.max(0, b.limit - b.used), reset: b.reset };
      }
      return out;
    },
    clearCache() {
      cache.clear();
      cacheBytes = 0;
    },
  };
}

module.exports = { createGithubProvider, generateDataset, summarize, DATASET_NOW };

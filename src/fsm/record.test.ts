import { describe, expect, it } from 'vitest';
import { attemptName, branchName, isUnder, labelValue, MAX_ATTEMPT_NAME, MAX_LABEL_VALUE } from './record.ts';

// What the API server accepts (apimachinery's IsDNS1123Subdomain and IsValidLabelValue).
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const ID = '1f3a9c2e-0000-4000-8000-000000000000';

describe('labelValue', () => {
  it('keeps a name that fits a label value as it is', () => {
    expect(labelValue('payment-service')).toBe('payment-service');
    expect(labelValue('a'.repeat(63))).toBe('a'.repeat(63));
  });

  it('shortens a longer name deterministically, within 63 characters, still a valid label value', () => {
    const long = `checkout-${'x'.repeat(60)}-eu-west-1`;
    const value = labelValue(long);
    expect(value.length).toBeLessThanOrEqual(MAX_LABEL_VALUE);
    expect(value).toMatch(LABEL_VALUE);
    expect(value.startsWith('checkout-xxx')).toBe(true);
    expect(labelValue(long)).toBe(value);
  });

  it('keeps two long names that share their first 63 characters apart', () => {
    const prefix = 'appset-generated-'.padEnd(70, 'y');
    expect(labelValue(`${prefix}-staging`)).not.toBe(labelValue(`${prefix}-production`));
  });

  it('never ends the cut part with a dash or a dot', () => {
    for (const cut of ['-', '.', '-.-']) {
      const value = labelValue(`${'a'.repeat(51)}${cut}${'b'.repeat(40)}`);
      expect(value).toMatch(LABEL_VALUE);
      expect(value).not.toMatch(/[-.]{2}|\.-/);
    }
  });
});

describe('attemptName', () => {
  it('is <app>-<8 hex of the correlationId> for the names that fit', () => {
    expect(attemptName({ namespace: 'argocd', name: 'payment-service' }, ID)).toBe('payment-service-1f3a9c2e');
    const seventy = 'a'.repeat(70);
    expect(attemptName({ namespace: 'argocd', name: seventy }, ID)).toBe(`${seventy}-1f3a9c2e`);
  });

  it('shortens an app name of up to 253 characters so the name and the branch fit', () => {
    for (const length of [MAX_ATTEMPT_NAME - 9, MAX_ATTEMPT_NAME - 8, 240, 253]) {
      const app = { namespace: 'argocd', name: `svc.${'a'.repeat(length - 8)}.eu1` };
      const name = attemptName(app, ID);
      expect(name.length).toBeLessThanOrEqual(Math.min(253, MAX_ATTEMPT_NAME));
      expect(name).toMatch(DNS_SUBDOMAIN);
      expect(name.endsWith('-1f3a9c2e')).toBe(true);
      expect(branchName(app, ID).length).toBeLessThanOrEqual(255);
    }
    expect(attemptName({ namespace: 'argocd', name: 'a'.repeat(MAX_ATTEMPT_NAME - 9) }, ID)).toBe(`${'a'.repeat(MAX_ATTEMPT_NAME - 9)}-1f3a9c2e`);
  });

  it('keeps two long app names with the same first characters apart', () => {
    const prefix = 'b'.repeat(240);
    expect(attemptName({ namespace: 'argocd', name: `${prefix}-one` }, ID)).not.toBe(attemptName({ namespace: 'argocd', name: `${prefix}-two` }, ID));
  });
});

describe('isUnder', () => {
  it('is the path itself or a path below it, never a sibling that shares its first characters', () => {
    expect(isUnder('apps/web', 'apps/web')).toBe(true);
    expect(isUnder('apps/web', 'apps/web/deployment.yaml')).toBe(true);
    expect(isUnder('apps/web', 'apps/web-canary/deployment.yaml')).toBe(false);
    expect(isUnder('apps/web', 'apps/webx')).toBe(false);
    expect(isUnder('apps/web', 'apps/we')).toBe(false);
    expect(isUnder('apps/web', 'apps')).toBe(false);
    expect(isUnder('apps/web/', 'apps/web/x')).toBe(false);
  });

  it('takes the repository root (empty or `.`) as above every path', () => {
    expect(isUnder('', 'apps/web/x')).toBe(true);
    expect(isUnder('.', 'README.md')).toBe(true);
  });
});

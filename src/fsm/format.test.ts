import { describe, expect, it } from 'vitest';
import { formatDuration } from './format.ts';

describe('formatDuration', () => {
  it('says seconds below two minutes', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(0.25)).toBe('0.3 s');
    expect(formatDuration(5)).toBe('5 s');
    expect(formatDuration(72)).toBe('72 s');
    expect(formatDuration(119.4)).toBe('119 s');
  });
  it('says minutes below two hours', () => {
    expect(formatDuration(119.6)).toBe('2 min');
    expect(formatDuration(840)).toBe('14 min');
    expect(formatDuration(7169)).toBe('119 min');
  });
  it('says hours, to a tenth, below two days', () => {
    expect(formatDuration(7171)).toBe('2 h');
    expect(formatDuration(3.5 * 3600)).toBe('3.5 h');
    expect(formatDuration(24 * 3600)).toBe('24 h');
    expect(formatDuration(47.9 * 3600)).toBe('47.9 h');
  });
  it('says days and whole hours from two days', () => {
    expect(formatDuration(47.96 * 3600)).toBe('2 d');
    expect(formatDuration(52 * 3600)).toBe('2 d 4 h');
    expect(formatDuration(72 * 3600)).toBe('3 d');
    expect(formatDuration(30 * 86_400 + 1800)).toBe('30 d 1 h');
  });
  it('never prints a meaningless number', () => {
    expect(formatDuration(Number.NaN)).toBe('an unknown time');
    expect(formatDuration(-3)).toBe('an unknown time');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('an unknown time');
  });
});

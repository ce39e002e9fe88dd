import { describe, expect, it } from 'vitest';
import { fieldsAt, keepFields, type Fields } from './fields.ts';

const FIELDS = {
  metadata: { name: true, labels: true },
  status: { health: { status: true }, history: [{ revision: true }] },
} as const satisfies Fields;

describe('keepFields', () => {
  it('keeps the named keys, whole where `true`, and of each list element what it names', () => {
    const object = {
      apiVersion: 'v1',
      metadata: { name: 'a', uid: 'u', labels: { x: '1', y: '2' }, managedFields: [{ manager: 'kubectl' }] },
      status: { health: { status: 'Healthy', message: 'ok' }, history: [{ revision: 'r1', source: { path: 'p' } }, { revision: 'r2' }], operationState: { phase: 'Succeeded' } },
    };
    expect(keepFields(object, FIELDS)).toEqual({
      metadata: { name: 'a', labels: { x: '1', y: '2' } },
      status: { health: { status: 'Healthy' }, history: [{ revision: 'r1' }, { revision: 'r2' }] },
    });
    // The input is not touched.
    expect(object.metadata.uid).toBe('u');
  });

  it('keeps what is not of the expected shape as it came, and every list element in its place', () => {
    expect(keepFields({ status: 'broken' }, FIELDS)).toEqual({ status: 'broken' });
    expect(keepFields({ status: { health: ['Degraded'], history: { revision: 'r' } } }, FIELDS)).toEqual({ status: { health: ['Degraded'], history: { revision: 'r' } } });
    expect(keepFields({ status: { history: [null, 'x', 3, { revision: 'r', id: 1 }] } }, FIELDS)).toEqual({ status: { history: [null, 'x', 3, { revision: 'r' }] } });
    expect(keepFields(null, FIELDS)).toBeNull();
    // An empty object stays an object: `health: {}` and no health are not the same to a reader.
    expect(keepFields({ status: { health: {} } }, FIELDS)).toEqual({ status: { health: {} } });
  });

  it('keeps the keys in their order, and never takes a key it was not told to as a prototype', () => {
    const kept = keepFields(JSON.parse('{"metadata":{"labels":{},"__proto__":{"polluted":true},"name":"a"}}'), FIELDS) as { metadata: object };
    expect(Object.keys(kept.metadata)).toEqual(['labels', 'name']);
    expect(Object.getPrototypeOf(kept.metadata)).toBe(Object.prototype);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});

describe('fieldsAt', () => {
  it('says what is kept of a path: all of it, part of it, or nothing', () => {
    expect(fieldsAt(FIELDS, ['metadata', 'labels', 'anything'])).toBe(true);
    expect(fieldsAt(FIELDS, ['status', 'history', 3, 'revision'])).toBe(true);
    expect(fieldsAt(FIELDS, ['status', 'history', '0'])).toEqual({ revision: true });
    expect(fieldsAt(FIELDS, ['status', 'history', 0, 'source'])).toBeUndefined();
    expect(fieldsAt(FIELDS, ['status', 'history', 'length'])).toBeUndefined();
    expect(fieldsAt(FIELDS, ['metadata', 'uid'])).toBeUndefined();
  });

  it('says that what is not of the expected shape is kept whole, when told the object', () => {
    expect(fieldsAt(FIELDS, ['status', 'toJSON'], { object: { status: [] } })).toBe(true);
    expect(fieldsAt(FIELDS, ['status', 'history', 'toJSON'], { object: { status: { history: { revision: 'r' } } } })).toBe(true);
    expect(fieldsAt(FIELDS, ['status', 'history'], { object: { status: { history: 'x' } } })).toBe(true);
    expect(fieldsAt(FIELDS, ['status', 'history'], { object: { status: { history: [] } } })).toEqual([{ revision: true }]);
    expect(fieldsAt(FIELDS, ['status', 'history', 0, 'source'], { object: { status: { history: [{}] } } })).toBeUndefined();
    expect(fieldsAt(FIELDS, ['status', 'operationState'], { object: { status: {} } })).toBeUndefined();
  });
});

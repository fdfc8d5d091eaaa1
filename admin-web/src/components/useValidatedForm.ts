import { useRef, useState, type FormEvent } from 'react';
import { fieldErrorsFrom, type FieldErrors } from '../validation';
import { focusFirstError } from './fields';

interface Options<V, F extends string, I> {
  initial: V;
  fieldOrder: readonly F[];
  /** The client-side rules (the same the API enforces). */
  validate: (values: V) => FieldErrors<F>;
  toInput: (values: V) => I;
  onSubmit: (input: I) => Promise<void>;
  /** Adjusts the next values after a change (e.g. a type without managed identity unticks it). */
  normalize?: (next: V, patch: Partial<V>) => V;
}

/**
 * The state every form here shares: values, inline errors (client rules first, then whatever field
 * the API refuses), a general message, and submitting. Errors of a field clear when it changes; once
 * the admin has tried to save, the rules follow every change.
 */
export function useValidatedForm<V extends object, F extends string, I>(options: Options<V, F, I>) {
  const { initial, fieldOrder, validate, toInput, onSubmit, normalize } = options;
  const [values, setValues] = useState<V>(initial);
  const [errors, setErrors] = useState<FieldErrors<F>>({});
  const [general, setGeneral] = useState<string | null>(null);
  const [attempted, setAttempted] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const form = useRef<HTMLFormElement>(null);

  function update(patch: Partial<V>) {
    const merged = { ...values, ...patch };
    const next = normalize ? normalize(merged, patch) : merged;
    setValues(next);
    if (attempted) {
      setErrors(validate(next));
    } else {
      const cleared = { ...errors };
      for (const k of Object.keys(patch)) delete cleared[k as F];
      setErrors(cleared);
    }
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setAttempted(true);
    setGeneral(null);
    const found = validate(values);
    setErrors(found);
    if (Object.keys(found).length) {
      focusFirstError(form.current, fieldOrder, found);
      return;
    }
    setSubmitting(true);
    try {
      await onSubmit(toInput(values));
    } catch (err) {
      const { fieldErrors, general: message } = fieldErrorsFrom(err, fieldOrder);
      setErrors(fieldErrors);
      setGeneral(message);
      focusFirstError(form.current, fieldOrder, fieldErrors);
    } finally {
      setSubmitting(false);
    }
  }

  return { values, errors, general, submitting, form, update, submit };
}
